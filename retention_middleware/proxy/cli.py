"""``retention-proxy``: the middleware in front of any OpenAI-compatible server, over HTTP.

    retention-proxy --upstream http://127.0.0.1:8000 --port 8080
    retention-proxy --demo          # the built-in echo model as upstream: no GPU, no database

Every flag has a ``RETENTION_*`` variable; a flag wins over its variable. A bad flag or setting exits
with status 2 and a message naming it; a MongoDB store that cannot be reached at start-up exits 1.
The tenant secret is read from ``RETENTION_TENANT_SECRET`` only, never from a flag, so it does not
show in process listings. SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in
flight finish for up to ``--grace``, and exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import uvicorn

from .. import __version__
from .._types import ASGIApp
from ..middleware import RetentionMiddleware
from ..settings import RetentionSettings, SettingsError, parse_bool, parse_duration
from ..store import make_store
from ..store.base import StoreError
from .file_limit import raise_open_file_limit
from .server import protocol_class

# flag -> (variable, help). Each flag's value is handed to the settings layer as its variable's text,
# so flags and environment are parsed and validated by exactly the same code.
_SETTING_FLAGS: dict[str, tuple[str, str]] = {
    "--upstream": ("RETENTION_UPSTREAM", "server to forward to (default http://127.0.0.1:8000)"),
    "--store": ("RETENTION_STORE", "'memory' (default) or a mongodb:// / mongodb+srv:// URI"),
    "--mongo-db": ("RETENTION_MONGO_DB", "MongoDB database name (default retention)"),
    "--ttl": ("RETENTION_TTL", "how long stored responses are kept: 90s, 12h, 30d (default 30d)"),
    "--policy": ("RETENTION_POLICY", "standard (honour store) or zero (never store)"),
    "--tenant-header": ("RETENTION_TENANT_HEADER", "trusted header naming the tenant, set by your gateway"),
    "--max-body": ("RETENTION_MAX_BODY", "largest inspected request body, e.g. 16MiB"),
    "--store-failure": ("RETENTION_STORE_FAILURE", "with the store down: serve (default) or reject"),
    "--upstream-timeout": ("RETENTION_UPSTREAM_TIMEOUT", "longest upstream silence before 504 (default 10m)"),
    # hostile input: head limits, connection timeouts and cap (issue 10)
    "--tenancy": ("RETENTION_TENANCY", "isolated (default: callers told apart by API key) or shared"),
    "--max-header-bytes": ("RETENTION_MAX_HEADER_BYTES", "largest request head, e.g. 32KiB (default); larger is 431"),
    "--max-headers": ("RETENTION_MAX_HEADERS", "most headers in a request (default 200); more is 431"),
    "--header-timeout": ("RETENTION_HEADER_TIMEOUT", "longest wait for a request's head (default 10s), then 408"),
    "--body-timeout": ("RETENTION_BODY_TIMEOUT", "longest silence while reading a body (default 60s), then 408"),
    "--idle-timeout": ("RETENTION_IDLE_TIMEOUT", "how long an idle keep-alive connection stays open (default 75s)"),
    "--max-connections": ("RETENTION_MAX_CONNECTIONS", "most open client connections (default 1000); then 503"),
}
_SERVER_DEFAULTS = {"RETENTION_HOST": "127.0.0.1", "RETENTION_PORT": "8080", "RETENTION_GRACE": "30s"}
_BACKLOG = 2048  # uvicorn's default


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit status for usage errors is 2 as well
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> _Parser:
    parser = _Parser(
        prog="retention-proxy",
        description="Zero-data-retention reverse proxy for OpenAI-compatible inference servers.",
        allow_abbrev=False,
    )
    parser.add_argument("--host", help="address to listen on (RETENTION_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on; 0 picks a free one (RETENTION_PORT, default 8080)")
    for flag, (variable, text) in _SETTING_FLAGS.items():
        parser.add_argument(flag, help=f"{text} ({variable})")
    parser.add_argument("--grace", help="how long SIGTERM waits for in-flight requests (RETENTION_GRACE, 30s)")
    parser.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="serve the built-in echo model as upstream (RETENTION_DEMO)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class _Options:
    def __init__(self, settings: RetentionSettings, host: str, port: int, grace: float, demo: bool) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.grace = grace
        self.demo = demo


def _options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> _Options:
    args = _parser().parse_args(argv)
    merged = dict(environ)
    for flag, (variable, _) in _SETTING_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            merged[variable] = value
    settings = RetentionSettings.from_env(merged)

    def server_value(name: str, flag_value: str | None) -> str:
        return flag_value if flag_value is not None else merged.get(name, _SERVER_DEFAULTS[name])

    port_text = server_value("RETENTION_PORT", args.port)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SettingsError(f"port (--port / RETENTION_PORT): {port_text!r} is not a port number 0-65535")
    grace = parse_duration(server_value("RETENTION_GRACE", args.grace), name="grace (--grace / RETENTION_GRACE)")
    demo = (
        args.demo if args.demo is not None else parse_bool(merged.get("RETENTION_DEMO", "false"), name="RETENTION_DEMO")
    )
    return _Options(settings, server_value("RETENTION_HOST", args.host), int(port_text), grace.total_seconds(), demo)


def _app(options: _Options) -> ASGIApp:
    if options.demo:
        from ..demo import EchoModel

        upstream: ASGIApp = EchoModel()
    else:
        from .forwarder import UpstreamProxy

        upstream = UpstreamProxy(options.settings)
    return RetentionMiddleware(upstream, options.settings)


async def _check_store(settings: RetentionSettings) -> None:
    # A throwaway store on a throwaway event loop: the server's own store is created on its loop.
    store = make_store(settings)
    try:
        await store.check()
    finally:
        await store.close()


def _configure_logging() -> None:
    # The access log is the product's output: JSON lines on stdout. Everything else goes to stderr.
    access = logging.getLogger("retention_middleware.access")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _banner(options: _Options, port: int) -> str:
    upstream = "built-in echo model (--demo)" if options.demo else options.settings.upstream
    lines = [
        f"retention-proxy {__version__} listening on http://{options.host}:{port}",
        f"  upstream: {upstream}",
    ]
    # upstream is printed above: with --demo the configured URL is not used, and must not look as if it were.
    lines += [f"  {name}: {value}" for name, value in options.settings.public_view().items() if name != "upstream"]
    return "\n".join(lines)


def _name_flags(message: str) -> str:
    """The settings layer names a bad setting by its variable; add the flag that mirrors it."""
    for flag, (variable, _) in _SETTING_FLAGS.items():
        message = message.replace(f"({variable})", f"({flag} / {variable})")
    return message


def _drain_on_sigterm(server: uvicorn.Server) -> None:
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found installed. With
    # the default one that kills the process (status 143) after a clean shutdown; with this one
    # the drain ends in exit status 0. Before uvicorn installs its own handler (and after it
    # restores this one), a SIGTERM still stops the server.
    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        options = _options(argv, os.environ)
    except SettingsError as error:
        print(f"retention-proxy: error: {_name_flags(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    if options.settings.uses_mongodb:
        try:
            asyncio.run(_check_store(options.settings))
        except StoreError as error:
            where = options.settings.public_view()["store"]
            if error.code == "store_refused":
                problem = "refused the connection's credentials or rights; check the user and password in"
            else:
                problem = "cannot be reached; check that the database is up and"
            print(
                f"retention-proxy: error: the MongoDB store at {where} {problem} --store / RETENTION_STORE "
                f"({error.code}), or use --store memory",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    _configure_logging()
    raise_open_file_limit(options.settings)
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted
    # sockets whose protocol says TCP, and a socket made with protocol 0 does not. With Nagle on,
    # every keep-alive answer written as head + body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as error:
        print(
            f"retention-proxy: error: cannot listen on {options.host}:{options.port}: {error.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    # Listen before announcing it: a client that connects as soon as it reads the banner waits in
    # the backlog until uvicorn accepts, instead of being refused while the lifespan starts up.
    sock.listen(_BACKLOG)
    print(_banner(options, sock.getsockname()[1]), file=sys.stderr, flush=True)
    config = uvicorn.Config(
        _app(options),
        access_log=False,  # the project's access log is the one: content-free, one JSON line each
        server_header=False,  # the upstream's Server and Date headers pass through; no duplicates
        date_header=False,
        timeout_graceful_shutdown=max(1, round(options.grace)),
        log_config=None,
        lifespan="on",
        backlog=_BACKLOG,
        # httptools and uvloop are dependencies (uvloop does not exist on Windows: asyncio there,
        # by "auto"). They shave the proxy's p99 more than its p50. The protocol is uvicorn's
        # httptools one with head limits, timeouts and a connection cap (proxy/server.py).
        http=protocol_class(options.settings),
        loop="auto",
    )
    server = uvicorn.Server(config)
    _drain_on_sigterm(server)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has drained and re-raised SIGINT; like uvicorn's own CLI
        pass
    if not server.started:
        raise SystemExit(3)  # uvicorn's own status for a failed start-up (e.g. a store misconfigured)


if __name__ == "__main__":
    main()
