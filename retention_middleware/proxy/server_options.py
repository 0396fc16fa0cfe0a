"""The proxy's server options (workers, TLS, logging): read like settings, from flags or ``RETENTION_*``.

They are not ``RetentionSettings`` fields because the in-process middleware has no use for them:
its host (vLLM, uvicorn) owns the socket, the processes and the log configuration.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from ..settings import RetentionSettings, SettingsError
from .logging_setup import FORMATS, LEVELS

MAX_ACCESS_LOG_FLUSH = 10.0
"""Longest an access line may be held: past this a log shipper would see the proxy as stalled."""


@dataclasses.dataclass
class ServerOptions:
    workers: int = 1
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    log_level: str = "info"
    log_format: str = "text"
    access_log_flush: float = 0.1
    """Seconds an access line may wait to be written in one batch with others; 0 writes each at once."""

    def public_view(self) -> dict[str, str]:
        return {
            "workers": str(self.workers),
            "ssl_certfile": self.ssl_certfile or "(unset)",
            "ssl_keyfile": self.ssl_keyfile or "(unset)",
            "log_level": self.log_level,
            "log_format": self.log_format,
            "access_log_flush": f"{self.access_log_flush:g}s",
        }


def server_options(
    values: Mapping[str, str], flags: Mapping[str, tuple[str, str]], settings: RetentionSettings
) -> ServerOptions:
    """``values``: the variables in force (flags already merged in); ``flags``: flag -> (variable, default)."""

    def read(flag: str) -> tuple[str, str]:
        variable, default = flags[flag]
        return values.get(variable, default).strip(), f"{flag[2:].replace('-', '_')} ({flag} / {variable})"

    workers_text, name = read("--workers")
    if not workers_text.isdigit() or int(workers_text) < 1:
        raise SettingsError(f"{name}: {workers_text!r} is not a number of processes (1 or more)")
    workers = int(workers_text)
    if workers > 1 and not settings.uses_mongodb:
        raise SettingsError(
            f"{name}: {workers} workers with the memory store would each keep their own stored responses, so a "
            "conversation's next turn, a GET or a DELETE reaching another worker would not find them; "
            "use a MongoDB store (--store mongodb://...) shared by every worker, or --workers 1"
        )
    certfile, cert_name = read("--ssl-certfile")
    keyfile, key_name = read("--ssl-keyfile")
    if keyfile and not certfile:
        raise SettingsError(f"{key_name}: set --ssl-certfile as well (the certificate the key belongs to)")
    for path, path_name in ((certfile, cert_name), (keyfile, key_name)):
        if path and not os.path.isfile(path):
            raise SettingsError(f"{path_name}: {path!r} is not a readable file")
    level, level_name = read("--log-level")
    if level.lower() not in LEVELS:
        raise SettingsError(f"{level_name}: {level!r} is not one of " + ", ".join(LEVELS))
    log_format, format_name = read("--log-format")
    if log_format.lower() not in FORMATS:
        raise SettingsError(f"{format_name}: {log_format!r} is not one of " + ", ".join(FORMATS))
    flush_text, flush_name = read("--access-log-flush")
    try:
        access_flush = float(flush_text.removesuffix("s"))
    except ValueError:
        access_flush = -1.0
    if not 0 <= access_flush <= MAX_ACCESS_LOG_FLUSH:
        raise SettingsError(
            f"{flush_name}: {flush_text!r} is not a number of seconds from 0 (write each line at once) "
            f"to {MAX_ACCESS_LOG_FLUSH:g}"
        )
    return ServerOptions(workers, certfile, keyfile, level.lower(), log_format.lower(), access_flush)
