"""Section 3: requests per second through uvicorn, bare app vs wrapped, saturated from other processes.

Fairness: every app runs in its own ``benchmarks.serve`` process with the same uvicorn
configuration (one worker, the HTTP implementation and event loop named in the results, uvicorn's
access log off); the servers are all up for the whole section, but only one is loaded at a time,
and the order rotates from round to round. The load comes from separate ``benchmarks.loadgen``
processes over keep-alive connections, so the client's own cost does not land on the server's core.
Each server gets a warm-up window before the measured rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from .asgi_calls import expect
from .http1 import post
from .payloads import PASSTHROUGH_PREFIX, chat_body
from .processes import REPO, Server, child_environment, cpu_seconds, uvicorn_app

SERVERS = ("bare", "wrapped", "wrapped-logged")


@dataclass(frozen=True)
class Load:
    processes: int
    connections: int
    start_delay: float
    """Seconds for the load processes to start and connect; they already send load meanwhile."""


def load(server: Server, request_file: str, shape: Load, duration: float) -> tuple[int, float]:
    """Saturate ``server`` for ``duration`` seconds: (requests answered in the window, server CPU share).

    The CPU share (server CPU seconds per wall second while loaded, 1.0 = one core) shows whether
    the server, not the load generator, was the bottleneck.
    """
    wall, cpu = time.monotonic(), cpu_seconds(server.pid)
    start = time.time() + shape.start_delay
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--port",
        str(server.port),
        "--request",
        request_file,
        "--connections",
        str(shape.connections),
        "--start",
        repr(start),
        "--duration",
        repr(duration),
    ]
    children = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=REPO, env=child_environment(), text=True)
        for _ in range(shape.processes)
    ]
    totals = {"ok": 0, "failed": 0}
    for child in children:
        out, _ = child.communicate(timeout=duration + 90)
        expect(child.returncode == 0, "a load generator failed", returncode=child.returncode)
        for key, value in json.loads(out).items():
            totals[key] += value
    share = (cpu_seconds(server.pid) - cpu) / (time.monotonic() - wall)
    expect(totals["failed"] == 0 and totals["ok"] > 0, "requests failed under load", **totals)
    return totals["ok"], share


def run(*, rounds: int, duration: float, warmup: float, shape: Load, http: str, loop: str) -> dict[str, Any]:
    routes = {
        "passthrough": post(f"{PASSTHROUGH_PREFIX}/v1/chat/completions", chat_body()),
        "chat_metered": post("/v1/chat/completions", chat_body()),
    }
    results: dict[str, Any] = {
        "uvicorn": {"workers": 1, "http": http, "loop": loop, "access_log": False},
        "load": {"processes": shape.processes, "connections_per_process": shape.connections, "keep_alive": True},
        "rounds": rounds,
        "seconds_per_round": duration,
        "warmup_seconds": warmup,
    }
    with ExitStack() as stack:
        servers = {name: stack.enter_context(uvicorn_app(name, http=http, loop=loop)) for name in SERVERS}
        files = {}
        for route, request in routes.items():
            file = stack.enter_context(tempfile.NamedTemporaryFile("wb", suffix=".http"))
            file.write(request)
            file.flush()
            files[route] = file.name
        for route, request_file in files.items():
            rates: dict[str, list[float]] = {name: [] for name in SERVERS}
            shares: dict[str, list[float]] = {name: [] for name in SERVERS}
            for name in SERVERS:
                load(servers[name], request_file, shape, warmup)
            for index in range(rounds):
                order = SERVERS[index % len(SERVERS) :] + SERVERS[: index % len(SERVERS)]
                for name in order:
                    answered, share = load(servers[name], request_file, shape, duration)
                    rates[name].append(answered / duration)
                    shares[name].append(share)
            bare = statistics.median(rates["bare"])
            results[route] = {
                "requests_per_second": {name: statistics.median(values) for name, values in rates.items()},
                "per_round": rates,
                "server_cpu_share": {name: statistics.median(values) for name, values in shares.items()},
                "ratio_wrapped": statistics.median(rates["wrapped"]) / bare,
                "ratio_wrapped_logged": statistics.median(rates["wrapped-logged"]) / bare,
            }
    return results
