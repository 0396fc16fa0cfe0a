"""The servers the peers section puts side by side, each started as its users start it, and always stopped.

- the upstream: ``benchmarks.fast_upstream`` (a canned answer, ~15 us a request);
- ``retention-proxy`` in front of it, with its access log on (stdout, as shipped);
- nginx (Debian's package), when installed: one worker, ``proxy_pass`` over keep-alive upstream
  connections, unbuffered so a stream goes on as it comes, its access log written to a file;
- the LiteLLM proxy, when a Python that has it is named (``--litellm-python`` or
  ``$BENCHMARK_LITELLM_PYTHON``): it has far more dependencies than this project could carry, so it
  lives in its own environment and is skipped, with the reason printed, when there is none.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from retention_middleware import __version__

from .processes import child, proxy_command


@dataclass(frozen=True)
class Target:
    name: str
    pid: int
    port: int
    version: str
    slow: bool = False
    """Measured for latency in its own rotation (``peers._latency``)."""


def free_port() -> int:
    """A port nothing listens on now, for servers (nginx, LiteLLM) that cannot be told to pick one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fast_upstream(chunks: int) -> Iterator[Target]:
    argv = [sys.executable, "-m", "benchmarks.fast_upstream", "--chunks", str(chunks)]
    with child(argv, re.compile(r"^PORT (\d+)$", re.MULTILINE)) as started:
        yield Target("upstream (direct)", started.pid, int(started.ready.group(1)), "benchmarks.fast_upstream")


@contextmanager
def retention_proxy(
    upstream: int, *, workers: int = 1, store: str = "memory", label: str = "", source: str | None = None
) -> Iterator[Target]:
    """``source``: another checkout whose ``retention_middleware`` the proxy imports instead (a baseline)."""
    argv = [*proxy_command(), "--upstream", f"http://127.0.0.1:{upstream}", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--workers", str(workers), "--store", store]
    env = {"RETENTION_TENANT_SECRET": "benchmark-tenant-secret-0123456789"}
    if source is not None:
        env["PYTHONPATH"] = source
    with child(argv, re.compile(r"listening on http://127\.0\.0\.1:(\d+)"), env=env) as started:
        name = label or "retention-proxy"
        yield Target(name, started.pid, int(started.ready.group(1)), f"retention-middleware {__version__}")


_NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;  # the default (1000) would close a measuring connection mid-run
    upstream model {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def nginx_missing() -> str | None:
    return None if shutil.which("nginx") else "nginx not installed (Debian: apt-get install nginx)"


@contextmanager
def nginx(upstream: int) -> Iterator[Target]:
    binary = shutil.which("nginx")
    assert binary is not None
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as prefix:
        port = free_port()
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(prefix=prefix, upstream=upstream, port=port), encoding="ascii")
        # nginx prints nothing once it listens; a line after the test of the config says it got that far.
        argv = ["sh", "-c", f'echo "nginx starting"; exec {binary} -p {prefix} -c {conf} -e {prefix}/error.log']
        with child(argv, re.compile(r"nginx starting")) as started:
            _wait_listening(port)
            yield Target("nginx", started.pid, port, f"nginx {version}")


def litellm_python(given: str | None) -> str | None:
    return given or os.environ.get("BENCHMARK_LITELLM_PYTHON") or None


def litellm_missing(python: str | None) -> str | None:
    if python is None:
        return "LiteLLM not measured: name a Python that has it (--litellm-python or $BENCHMARK_LITELLM_PYTHON)"
    probe = subprocess.run([python, "-c", "import litellm.proxy.proxy_cli"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"LiteLLM not importable by {python}: {probe.stderr.strip()[-200:]}"


@contextmanager
def litellm(python: str, upstream: int) -> Iterator[Target]:
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-litellm-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(
            "model_list:\n  - model_name: '*'\n    litellm_params:\n      model: openai/*\n"
            f"      api_base: http://127.0.0.1:{upstream}/v1\n      api_key: sk-upstream\n",
            encoding="ascii",
        )
        port = free_port()
        argv = [python, "-m", "litellm.proxy.proxy_cli", "--config", str(config), "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--num_workers", "1"]
        # The benchmark's bearer token is the master key, so requests pass LiteLLM's own auth check.
        env = {"LITELLM_MASTER_KEY": "sk-benchmark", "LITELLM_LOG": "ERROR"}
        ready = re.compile(r"Proxy initialized|Uvicorn running on|Application startup complete")
        with child(argv, ready, env=env, timeout=180) as started:  # it imports for a minute on two busy cores
            _wait_listening(port, attempts=2400)
            yield Target("LiteLLM proxy", started.pid, port, f"litellm {version}", slow=True)


def _wait_listening(port: int, attempts: int = 200) -> None:
    for _ in range(attempts):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")
