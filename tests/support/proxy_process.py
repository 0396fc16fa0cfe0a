"""``retention-proxy`` as a subprocess on a loopback port, for the observability and operations tests.

The same shape as test_cli.py's helpers: the port is read from the banner (the first stderr line),
stdout (the access log) and stderr are read by threads so a pipe never fills, every wait has a
deadline, and ``stop()`` terminates what is still running.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson
import pytest

DEADLINE = 20.0
COMMAND = [sys.executable, "-m", "retention_middleware.proxy.cli"]
BANNER = re.compile(r"retention-proxy (\S+) listening on (https?://[\d.]+:(\d+))")


def proxy_env(**variables: str) -> dict[str, str]:
    """This process's environment without ``RETENTION_*`` or Prometheus variables, plus ``variables``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RETENTION_") and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    return env


class Lines:
    """A pipe read line by line in a thread; ``seen`` holds every line read so far."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._queue.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._queue.put(None)

    def next(self, timeout: float = DEADLINE) -> str | None:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line within {timeout} s; so far: {self.seen}")
        if line is not None:
            self.seen.append(line)
        return line

    def arrives_within(self, timeout: float) -> bool:
        """Whether a line (or the end of the stream) comes within ``timeout``; one that does goes in ``seen``."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is not None:
            self.seen.append(line)
        return True

    def until(self, predicate: Callable[[str], bool], timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"stream ended before the expected line; seen: {self.seen}")
            if predicate(line):
                return line

    def to_end(self) -> list[str]:
        """Every line up to the end of the stream (the process has exited)."""
        while self.next() is not None:
            pass
        return self.seen

    def join(self) -> None:
        """Wait for the end of the stream; every line is in ``seen`` afterwards."""
        self._thread.join(DEADLINE)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.seen.append(line)


class ProxyProcess:
    """One ``retention-proxy`` process; ``url`` is known once the banner is read."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*(command or COMMAND), "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=proxy_env(**(env or {})),
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = Lines(self.process.stdout)
        self.stderr = Lines(self.process.stderr)
        first = self.stderr.next() or ""
        match = BANNER.search(first)
        if match is None:
            self.stop()
            pytest.fail(f"no banner as the first stderr line; stderr: {self.stderr.seen}")
        self.banner = first
        self.url = match.group(2)

    def wait_started(self, workers: int = 1) -> None:
        for _ in range(workers):
            self.stderr.until(lambda line: "Application startup complete" in line)

    def access_records(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` access-log records (JSON lines on stdout), waiting for them if need be."""
        while len(self.stdout.seen) < count:
            if self.stdout.next() is None:
                pytest.fail(f"stdout ended after {self.stdout.seen}")
        return [orjson.loads(line) for line in self.stdout.seen[:count]]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(DEADLINE)
        self.stdout.join()
        self.stderr.join()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


@pytest.fixture
def run_proxy() -> Iterator[Callable[..., ProxyProcess]]:
    """``run_proxy(*args, env={...})`` starts a proxy; every one is stopped after the test."""
    proxies: list[ProxyProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ProxyProcess:
        proxy = ProxyProcess(*args, env=env)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def run_command(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The command run to completion (start-up failures, ``tenant-id``)."""
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, env=proxy_env(**(env or {})), input=stdin
    )
