"""``python -m benchmarks.serve APP``: one app under uvicorn, for the throughput and proxy sections.

Every app is served with the same uvicorn configuration (one worker, the event loop and HTTP
implementation named on the command line, uvicorn's access log off) so that the only difference
between two servers is the app. It binds a free loopback port and prints ``PORT <n>`` once ready.
"""

from __future__ import annotations

import argparse
import socket

import uvicorn

from retention_middleware._types import ASGIApp

from .apps import access_log_enabled, upstream, wrapped

APPS = ("bare", "wrapped", "wrapped-logged")


def build(name: str) -> ASGIApp:
    if name == "bare":
        return upstream()
    return wrapped(upstream())


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        print(f"PORT {self.port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--http", default="h11")
    parser.add_argument("--loop", default="asyncio")
    args = parser.parse_args()
    # IPPROTO_TCP, not the default 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every keep-alive request after the first waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        build(args.app),
        workers=1,
        http=args.http,
        loop=args.loop,
        lifespan="on",
        access_log=False,
        log_level="warning",
        ws="none",
        backlog=2048,
    )
    server = _AnnouncingServer(config, sock.getsockname()[1])
    if args.app == "wrapped-logged":
        with access_log_enabled():
            server.run(sockets=[sock])
    else:
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
