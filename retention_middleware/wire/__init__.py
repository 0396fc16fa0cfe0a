"""What crosses the wire: SSE parsing, body tees, JSON spans, request bodies and usage extraction."""
