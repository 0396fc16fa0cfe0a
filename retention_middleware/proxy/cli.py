"""``retention-proxy``: the middleware in front of any OpenAI-compatible server, over HTTP.

    retention-proxy --upstream http://127.0.0.1:8000 --port 8080
    retention-proxy --demo          # the built-in echo model as upstream: no GPU, no database
    retention-proxy new-key         # a fresh master key for RETENTION_ENCRYPTION_KEY
    retention-proxy rotate-keys     # re-wrap every data key under the newest master key

Every flag has a ``RETENTION_*`` variable; a flag wins over its variable. A bad flag or setting exits
with status 2 and a message naming it; a MongoDB store that cannot be reached at start-up exits 1.
The tenant secret is read from ``RETENTION_TENANT_SECRET`` only, never from a flag, so it does not
show in process listings. SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in
flight finish for up to ``--grace``, and exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import uvicorn

from .. import __version__
from .._types import ASGIApp
from ..crypto.commands import COMMANDS, run_command
from ..middleware import RetentionMiddleware
from ..observability.endpoints import ProbeEndpoints
from ..settings import RetentionSettings, SettingsError, format_duration, parse_bool, parse_duration
from ..store import make_store
from ..store.base import StoreError
from .backend_probe import resolved_backend
from .file_limit import raise_open_file_limit
from .logging_setup import configure_logging, print_banner
from .server import protocol_class
from .server_options import ServerOptions, server_options
from .tenant_id import tenant_id
from .upstream_tls import upstream_ssl
from .workers import serve_workers, worker_exit_hook

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
    "--responses-backend": (
        "RETENTION_RESPONSES_BACKEND",
        "how /v1/responses reaches the upstream: responses, chat (translated) or auto (ask it; the default)",
    ),
    "--upstream-ca-bundle": ("RETENTION_UPSTREAM_CA_BUNDLE", "PEM CA bundle checking an https:// upstream"),
    "--upstream-client-cert": ("RETENTION_UPSTREAM_CLIENT_CERT", "client certificate (PEM) for the upstream"),
    "--upstream-client-key": ("RETENTION_UPSTREAM_CLIENT_KEY", "its private key, if not in the cert file"),
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
# The server's own options (not RetentionSettings): flag -> (variable, default, help).
_SERVER_FLAGS: dict[str, tuple[str, str, str]] = {
    "--workers": ("RETENTION_WORKERS", "1", "processes sharing the port; more than 1 needs a MongoDB store"),
    "--ssl-certfile": ("RETENTION_SSL_CERTFILE", "", "PEM certificate (chain): serve HTTPS"),
    "--ssl-keyfile": ("RETENTION_SSL_KEYFILE", "", "its private key"),
    "--log-level": ("RETENTION_LOG_LEVEL", "info", "critical, error, warning, info or debug"),
    "--log-format": ("RETENTION_LOG_FORMAT", "text", "text or json (every stderr line, banner included)"),
    "--access-log-flush": (
        "RETENTION_ACCESS_LOG_FLUSH",
        "0.1",
        "seconds access lines may wait to be written together (0: each at once)",
    ),
}
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
        epilog="key commands: `retention-proxy new-key`, `retention-proxy rotate-keys` (encryption at rest)",
    )
    parser.add_argument("--host", help="address to listen on (RETENTION_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on; 0 picks a free one (RETENTION_PORT, default 8080)")
    for flag, (variable, text) in _SETTING_FLAGS.items():
        parser.add_argument(flag, help=f"{text} ({variable})")
    parser.add_argument("--grace", help="how long SIGTERM waits for in-flight requests (RETENTION_GRACE, 30s)")
    for flag, (variable, default, text) in _SERVER_FLAGS.items():
        parser.add_argument(flag, help=f"{text} ({variable}, default {default or 'unset'})")
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
        self.backend_note: str = settings.responses_backend
        self.server = ServerOptions()
        self.variables: dict[str, str] = {}  # every RETENTION_* value in force, flags included


def _options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> _Options:
    args = _parser().parse_args(argv)
    merged = dict(environ)
    merged.setdefault("RETENTION_RESPONSES_BACKEND", "auto")  # the proxy asks; in-process the default is responses
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
    options = _Options(settings, server_value("RETENTION_HOST", args.host), int(port_text), grace.total_seconds(), demo)
    for flag, (variable, _, _) in _SERVER_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            merged[variable] = value
    options.server = server_options(merged, {flag: spec[:2] for flag, spec in _SERVER_FLAGS.items()}, settings)
    upstream_ssl(settings)  # an unreadable CA bundle or client certificate fails here, not at the first request
    if args.demo is not None:
        merged["RETENTION_DEMO"] = "true" if demo else "false"
    options.variables = {name: value for name, value in merged.items() if name.startswith("RETENTION_")}
    return options


def _app(options: _Options) -> ASGIApp:
    if options.demo:
        from ..demo import EchoModel

        upstream: ASGIApp = EchoModel()
    else:
        from .forwarder import UpstreamProxy

        upstream = UpstreamProxy(options.settings)
    middleware = RetentionMiddleware(upstream, options.settings)
    s = options.settings
    # The probes sit in front: they are answered here, never forwarded, and are not access-logged.
    return ProbeEndpoints(
        middleware,
        middleware.store,
        upstream=None if options.demo else s.upstream,
        metrics_path=s.metrics_path,
        health_path=s.health_path,
        ready_path=s.ready_path,
        responses_backend=middleware.responses_backend.describe,
    )


def worker_app() -> ASGIApp:
    """The app of one ``--workers`` process: uvicorn imports it by name, and the options come from the
    environment the parent filled in (flags included) before starting the workers."""
    options = _options([], os.environ)
    chosen = options.server
    configure_logging(chosen.log_level, chosen.log_format, pid=True, access_flush=chosen.access_log_flush)
    worker_exit_hook()
    return _app(options)


async def _check_store(settings: RetentionSettings) -> None:
    # A throwaway store on a throwaway event loop: the server's own store is created on its loop.
    store = make_store(settings)
    try:
        await store.check()
    finally:
        await store.close()


def _banner(options: _Options, port: int) -> str:
    return "\n".join(_banner_parts(options, port)[0])


def _banner_parts(options: _Options, port: int) -> tuple[list[str], dict[str, Any]]:
    upstream = "built-in echo model (--demo)" if options.demo else options.settings.upstream
    scheme = "https" if options.server.ssl_certfile else "http"
    url = f"{scheme}://{options.host}:{port}"
    view = {**options.settings.public_view(), "responses_backend": options.backend_note}
    # upstream is printed first: with --demo the configured URL is not used, and must not look as if it were.
    view.pop("upstream")
    server = {"grace": format_duration(timedelta(seconds=options.grace)), **options.server.public_view()}
    lines = [f"retention-proxy {__version__} listening on {url}", f"  upstream: {upstream}"]
    lines += [f"  {name}: {value}" for name, value in {**view, **server}.items()]
    fields = {"version": __version__, "url": url, "upstream": upstream, "settings": {**view, **server}}
    return lines, fields


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
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["tenant-id"]:
        raise SystemExit(tenant_id(sys.stdin, os.environ))
    if arguments[:1] and arguments[0] in COMMANDS:  # retention-proxy new-key | rotate-keys
        raise SystemExit(run_command(arguments[0], arguments[1:], os.environ))
    try:
        options = _options(arguments, os.environ)
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
    options.settings, options.backend_note = resolved_backend(options.settings, demo=options.demo)
    chosen = options.server
    configure_logging(chosen.log_level, chosen.log_format, pid=chosen.workers > 1, access_flush=chosen.access_log_flush)
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
    print_banner(*_banner_parts(options, sock.getsockname()[1]), options.server.log_format)
    if options.server.workers > 1:
        serve_workers(sock, options.variables, options.server, _uvicorn_options(options))
        return
    config = uvicorn.Config(_app(options), **_uvicorn_options(options))
    server = uvicorn.Server(config)
    _drain_on_sigterm(server)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has drained and re-raised SIGINT; like uvicorn's own CLI
        pass
    if not server.started:
        raise SystemExit(3)  # uvicorn's own status for a failed start-up (e.g. a store misconfigured)


def _uvicorn_options(options: _Options) -> dict[str, Any]:
    return dict(
        access_log=False,  # the project's access log is the one: content-free, one JSON line each
        server_header=False,  # the upstream's Server and Date headers pass through; no duplicates
        date_header=False,
        # uvicorn's X-Forwarded-For handling (trusted from 127.0.0.1) only changes the client address,
        # which the proxy reads only to log it: without --log-client-address it is a layer per request
        # for nothing.
        proxy_headers=options.settings.log_client_address,
        timeout_graceful_shutdown=max(1, round(options.grace)),
        log_config=None,
        lifespan="on",
        backlog=_BACKLOG,
        # httptools and uvloop are dependencies (uvloop does not exist on Windows: asyncio there,
        # by "auto"). They shave the proxy's p99 more than its p50. The protocol is uvicorn's
        # httptools one with head limits, timeouts and a connection cap (proxy/server.py).
        http=protocol_class(options.settings),
        loop="auto",
        ssl_certfile=options.server.ssl_certfile or None,
        ssl_keyfile=options.server.ssl_keyfile or None,
    )


if __name__ == "__main__":
    main()
