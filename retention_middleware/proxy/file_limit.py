"""Room for the connections the settings allow: one file descriptor per client and upstream connection.

A common default soft limit is 1024 open files, below the default caps (1000 client connections and
1000 upstream connections); past it, ``accept`` fails with EMFILE and the proxy stops taking clients.
The soft limit is raised towards the hard limit at start-up, and a warning says so if that is not enough.
"""

from __future__ import annotations

import logging
import sys

from ..settings import RetentionSettings


def raise_open_file_limit(settings: RetentionSettings) -> None:
    """Let the process hold the connections the settings allow: each client connection and each
    upstream connection is a file descriptor, and a common default soft limit is 1024."""
    if sys.platform == "win32":
        return
    import resource

    needed = settings.max_connections + settings.upstream_max_connections + 256  # files, sockets of our own
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        logging.getLogger("retention_middleware").warning(
            "the open-file limit (%d) is below what RETENTION_MAX_CONNECTIONS and "
            "RETENTION_UPSTREAM_MAX_CONNECTIONS allow (%d); raise it (ulimit -n) or lower them",
            soft,
            needed,
        )
