"""``python -m benchmarks.fast_upstream``: a fixed-answer OpenAI-shaped upstream costing ~15 us per request.

The peers section compares proxies, so the upstream must cost far less than any of them, or every
proxy would look alike behind it (the echo model under uvicorn costs ~150 us a request). This one is
an asyncio protocol on raw bytes (uvloop when installed) that answers every POST with a canned body:

- ``/v1/responses``: a response object with a fresh id (so a proxy that stores it stores each one);
- a body asking for ``"stream": true``: ``--chunks`` chat-completion chunks, each its own chunked
  transfer-encoding chunk and its own write, then ``[DONE]``;
- anything else: a ~1 KB chat completion with usage, as vLLM answers.

It binds a free loopback port and prints ``PORT <n>`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
from importlib.util import find_spec
from typing import cast

import orjson

from .payloads import MODEL, prose

_TEXT = prose(160)
_CHAT = orjson.dumps(
    {
        "id": "chatcmpl-fast",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 160, "completion_tokens": 160, "total_tokens": 320},
    }
)
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
_STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_ids = itertools.count()


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _delta(index: int) -> bytes:
    choice = {"index": 0, "delta": {"content": f" word{index}"}, "finish_reason": None}
    event = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [choice]}  # fmt: skip
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _response_object() -> bytes:
    text = {"type": "output_text", "text": _TEXT[:400], "annotations": []}
    item = {"id": "msg_fast", "type": "message", "role": "assistant", "status": "completed", "content": [text]}
    return orjson.dumps(
        {"id": f"resp_fast{next(_ids):012d}", "object": "response", "created_at": 1, "model": MODEL,
         "status": "completed", "store": True, "previous_response_id": None, "output": [item],
         "usage": {"input_tokens": 100, "output_tokens": 100, "total_tokens": 200}}
    )  # fmt: skip


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at)
    return int(head[at + 15 : stop if stop > 0 else len(head)])


class _Protocol(asyncio.Protocol):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head.split(b" ", 2)[1], body)

    def _answer(self, path: bytes, body: bytes) -> None:
        assert self.transport is not None
        if b'"stream":true' in body.replace(b" ", b""):
            self.transport.write(_STREAM_HEAD)
            for chunk in self.chunks:
                self.transport.write(chunk)
            self.transport.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            return
        answer = _response_object() if path.endswith(b"/v1/responses") else _CHAT
        self.transport.write(_HEAD % len(answer) + answer)


async def _serve(chunks: int) -> None:
    encoded = [_chunk(_delta(index)) for index in range(chunks)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(lambda: _Protocol(encoded), sock=sock, backlog=2048)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fast_upstream")
    parser.add_argument("--chunks", type=int, default=100, help="chunks in a streamed answer")
    args = parser.parse_args()
    if find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(_serve(args.chunks))
    else:
        asyncio.run(_serve(args.chunks))


if __name__ == "__main__":
    main()
