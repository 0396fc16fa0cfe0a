"""``--workers N``: N processes accepting on one socket, each with its own middleware and event loop.

The workers share nothing in memory, so the store must be MongoDB (the command line refuses the
memory store with N > 1). Each worker is a fresh interpreter that uvicorn starts and imports
``cli.worker_app`` in; its options travel as the ``RETENTION_*`` environment, flags included. Metrics
use prometheus_client's multiprocess mode: every worker writes its values under
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless the operator names one) and whichever
worker answers ``/metrics`` sums them all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

from .server import WORKER_PROTOCOL
from .server_options import ServerOptions

APP = "retention_middleware.proxy.cli:worker_app"


def worker_exit_hook() -> None:
    """In a worker: when it exits, drop its live gauge (in flight) from the shared files, so a worker
    uvicorn restarts does not leave a stale count behind."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pid = os.getpid()
        atexit.register(lambda: multiprocess.mark_process_dead(pid))  # type: ignore[no-untyped-call]


def serve_workers(
    sock: socket.socket, variables: Mapping[str, str], server: ServerOptions, uvicorn_options: dict[str, Any]
) -> None:
    os.environ.update(variables)
    created = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created = tempfile.mkdtemp(prefix="retention-proxy-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    try:
        options = {**uvicorn_options, "http": WORKER_PROTOCOL}  # the limits travel in the environment
        config = uvicorn.Config(APP, factory=True, workers=server.workers, **options)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
