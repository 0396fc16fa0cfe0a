"""Closed-loop load on one server for the peers section: ``wrk`` when installed, else ``benchmarks.loadgen``.

wrk (Debian's package) is a C load generator, so it leaves more of the two cores to the servers
being compared and reports latency percentiles under load; the project's own load generator is the
fallback (req/s only). Either way the figure of interest is CPU per request: the CPU the server's
process tree used while loaded, over the requests it answered, which does not depend on how much
of the machine the load generator took.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from .asgi_calls import expect
from .processes import Server, tree_cpu_seconds
from .throughput import Load, load

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Loaded:
    tool: str
    connections: int
    seconds: float
    requests: int
    requests_per_second: float
    cpu_us_per_request: float
    p50_ms: float | None
    p99_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "benchmarks.loadgen"


def _lua(path: str, body: bytes) -> str:
    text = body.decode("utf-8")
    expect("]==]" not in text, "the body cannot be quoted for wrk")
    return (
        'wrk.method = "POST"\n'
        f"wrk.path = [==[{path}]==]\n"
        f"wrk.body = [==[{text}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-benchmark"\n'
    )


def _milliseconds(output: str, label: str) -> float | None:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def _wrk(port: int, pid: int, path: str, body: bytes, connections: int, seconds: float) -> Loaded:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8") as script:
        script.write(_lua(path, body))
        script.flush()
        # wrk takes whole seconds only.
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name]
        argv.append(f"http://127.0.0.1:{port}")
        cpu = tree_cpu_seconds(pid)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        used = tree_cpu_seconds(pid) - cpu
    expect(done.returncode == 0, "wrk failed", stderr=done.stderr[-500:])
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", done.stdout)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    expect(total is not None and rate is not None, "wrk printed no totals", out=done.stdout[-500:])
    assert total is not None and rate is not None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    expect(errors is None, "requests failed under load", out=done.stdout[-500:])
    requests = int(total.group(1))
    return Loaded("wrk", connections, seconds, requests, float(rate.group(1)), used / max(1, requests) * 1e6,
                  _milliseconds(done.stdout, "50%"), _milliseconds(done.stdout, "99%"))  # fmt: skip


def _loadgen(port: int, pid: int, path: str, body: bytes, connections: int, seconds: float) -> Loaded:
    from .http1 import post

    with tempfile.NamedTemporaryFile("wb", suffix=".http") as request:
        request.write(post(path, body))
        request.flush()
        cpu = tree_cpu_seconds(pid)
        answered, _ = load(Server(pid, f"http://127.0.0.1:{port}"), request.name, Load(1, connections, 0.3), seconds)
        used = tree_cpu_seconds(pid) - cpu
    return Loaded("benchmarks.loadgen", connections, seconds, answered, answered / seconds,
                  used / max(1, answered) * 1e6, None, None)  # fmt: skip


def saturate(port: int, pid: int, path: str, body: bytes, *, connections: int, seconds: float) -> Loaded:
    """Load ``port`` with ``connections`` keep-alive connections for ``seconds``; ``pid`` is the server's."""
    run = _wrk if tool() == "wrk" else _loadgen
    return run(port, pid, path, body, connections, seconds)
