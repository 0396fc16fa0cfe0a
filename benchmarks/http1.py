"""Just enough HTTP/1.1 for the load generator and the latency client: raw bytes, Content-Length framing.

Both measure a server, so they must cost as little as possible themselves; a client library would
add tens of microseconds per request on the same core budget.
"""

from __future__ import annotations

import socket
from time import perf_counter_ns

HEADER_END = b"\r\n\r\n"


def post(path: str, body: bytes) -> bytes:
    """A keep-alive POST as an OpenAI client sends it."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-benchmark\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def framing(head: bytes) -> tuple[int, int]:
    """(status, body length) from a response head (everything before the blank line)."""
    lowered = head.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        raise RuntimeError("response without Content-Length: only fixed-length answers are measured")
    end = lowered.find(b"\r\n", start + 2)
    length = int(lowered[start + 17 : end if end >= 0 else len(lowered)])
    return int(head[9:12]), length


class Connection:
    """One blocking keep-alive connection; ``timed`` sends a request and reads the whole response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def timed(self, request: bytes) -> tuple[int, int]:
        """(nanoseconds from first byte sent to last byte received, status)."""
        started = perf_counter_ns()
        self.sock.sendall(request)
        buffer = self.buffer
        while HEADER_END not in buffer:
            buffer += self._read()
        head, _, buffer = buffer.partition(HEADER_END)
        status, length = framing(head)
        while len(buffer) < length:
            buffer += self._read()
        elapsed = perf_counter_ns() - started
        self.buffer = buffer[length:]
        return elapsed, status

    def _read(self) -> bytes:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def read_framed(connection: Connection) -> tuple[int, int]:
    """Read one whole response of either framing from ``connection``: (status, body chunks).

    A proxy may answer with chunked transfer encoding where the upstream gave a length (a body it
    rewrites), and streams are chunked; the chunks are counted, the payload is dropped.
    """
    buffer = connection.buffer
    while HEADER_END not in buffer:
        buffer += connection._read()
    head, _, buffer = buffer.partition(HEADER_END)
    status = int(head[9:12])
    if b"\r\ncontent-length:" in head.lower():
        _, length = framing(head)
        while len(buffer) < length:
            buffer += connection._read()
        connection.buffer = buffer[length:]
        return status, 1
    chunks = 0
    while True:
        while b"\r\n" not in buffer:
            buffer += connection._read()
        size_line, _, buffer = buffer.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        while len(buffer) < size + 2:
            buffer += connection._read()
        buffer = buffer[size + 2 :]
        if size == 0:  # the last chunk; no trailers are sent by anything measured here
            connection.buffer = buffer
            return status, chunks
        chunks += 1


def timed_framed(connection: Connection, request: bytes) -> tuple[int, int, int]:
    """(nanoseconds from first byte sent to last byte received, status, body chunks)."""
    started = perf_counter_ns()
    connection.sock.sendall(request)
    status, chunks = read_framed(connection)
    return perf_counter_ns() - started, status, chunks
