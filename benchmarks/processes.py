"""Child processes the benchmarks start and always stop: servers, the proxy, the Mongo emulator."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The children import this checkout's benchmarks package; RETENTION_* from the caller's shell
    # would change what is measured, so none are passed on.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in [name for name in env if name.startswith("RETENTION_")]:
        del env[name]
    return env


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Child:
    pid: int
    ready: re.Match[str]
    """The line that announced the child ready."""


@dataclass(frozen=True)
class Server:
    pid: int
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of ``pid`` and every process below it (a server's workers; nginx's worker)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += cpu_seconds(current)
        pending += parents.get(current, [])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def child(
    argv: Sequence[str], ready: re.Pattern[str], env: dict[str, str] | None = None, timeout: float = START_TIMEOUT
) -> Iterator[Child]:
    """Start ``argv`` and wait until a line of its stdout or stderr matches ``ready``.

    Output goes to a temporary file rather than a pipe: a child that logs a line per request (the
    proxy's access log) must never block on a pipe nobody reads. It is opened for appending: the
    child shares the file offset, and without O_APPEND its writes would land wherever this process
    last seeked to read, overwriting the line it is waiting for.
    """
    with tempfile.TemporaryFile("a+", encoding="utf-8") as output:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**child_environment(), **(env or {})},
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                output.seek(0)
                match = ready.search(output.read())
                if match:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    raise RuntimeError(f"{' '.join(argv)} did not start:\n{output.read()[-2000:]}")
                time.sleep(0.02)
            yield Child(process.pid, match)
        finally:
            if process.stdin:
                process.stdin.close()  # the Mongo emulator's signal to stop
            _stop(process)


@contextmanager
def uvicorn_app(app: str, *, http: str = "h11", loop: str = "asyncio") -> Iterator[Server]:
    """``benchmarks.serve`` in a child process."""
    argv = [sys.executable, "-m", "benchmarks.serve", app, "--http", http, "--loop", loop]
    with child(argv, re.compile(r"^PORT (\d+)$", re.MULTILINE)) as started:
        yield Server(started.pid, f"http://127.0.0.1:{started.ready.group(1)}")


@contextmanager
def mongo_emulator() -> Iterator[str]:
    """The MongoDB wire-protocol test server in a child process; yields its URI."""
    argv = [sys.executable, "-m", "benchmarks.mongo_emulator"]
    with child(argv, re.compile(r"^(mongodb://\S+)$", re.MULTILINE)) as started:
        yield started.ready.group(1)


def proxy_command() -> list[str]:
    """``retention-proxy`` as installed next to this interpreter, as a user would run it."""
    script = Path(sys.executable).with_name("retention-proxy")
    if script.exists():
        return [str(script)]
    found = shutil.which("retention-proxy")
    return [found] if found else [sys.executable, "-m", "retention_middleware.proxy.cli"]


@contextmanager
def retention_proxy(upstream: str) -> Iterator[Server]:
    """``retention-proxy --upstream URL --port 0``, at the URL its banner announces."""
    argv = [*proxy_command(), "--upstream", upstream, "--host", "127.0.0.1", "--port", "0"]
    with child(argv, re.compile(r"listening on (http://127\.0\.0\.1:\d+)")) as started:
        yield Server(started.pid, started.ready.group(1))
