"""Test support: ASGI drivers, recorded cassettes, loopback servers and the MongoDB wire-protocol test server."""
