"""RetentionSettings: every option of the middleware and the proxy, from keywords or ``RETENTION_*``.

vLLM's ``--middleware`` flag constructs the middleware with no arguments, so every setting must also
be readable from the environment. Values are checked once, at construction, and a bad one raises
``SettingsError`` naming the setting and how to fix it: an operator learns at start-up, not at the
first request.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, get_args

Policy = Literal["standard", "zero"]
StoreFailureMode = Literal["serve", "reject"]
ResponsesBackendSetting = Literal["responses", "chat", "auto"]
Tenancy = Literal["isolated", "shared"]

ENV_PREFIX = "RETENTION_"


class SettingsError(ValueError):
    """A setting has a value the middleware cannot use; the message names it and the fix."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}  # fmt: skip


def parse_duration(text: str, *, name: str = "duration") -> timedelta:
    """Parse ``90s``, ``15m``, ``12h``, ``30d``, ``2w``, ``250ms`` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise SettingsError(
            f"{name}: {text!r} is not a duration; write a number with a unit, e.g. 90s, 15m, 12h or 30d"
        )
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _DURATION_UNITS[(unit or "s").lower()])


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration in the units ``parse_duration`` reads: 30d, 12h, 90s."""
    milliseconds = round(value.total_seconds() * 1000)
    for unit in ("d", "h", "m", "s"):
        size = round(_DURATION_UNITS[unit] * 1000)
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def format_size(value: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        size = _SIZE_UNITS[unit.lower()]
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def parse_size(text: str, *, name: str = "size") -> int:
    """Parse ``16MiB``, ``512KiB``, ``1GB`` or a bare number of bytes."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise SettingsError(
            f"{name}: {text!r} is not a size; write a number of bytes with a unit, e.g. 16MiB or 512KiB"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_bool(text: str, *, name: str = "flag") -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: {text!r} is not a boolean; use true or false")


def parse_names(text: str, *, name: str = "list") -> frozenset[str]:
    """A comma-separated list; blanks are dropped so a trailing comma is harmless."""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _env(env_name: str, parse: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Field metadata: which variable feeds the field and how its text becomes a value."""
    return {"env": env_name, "parse": parse}


@dataclass(frozen=True)
class RetentionSettings:
    """Every option of the middleware and the proxy. Build with keywords or ``from_env()``."""

    store: str = field(default="memory", metadata=_env("RETENTION_STORE"))
    """``memory`` (in-process, volatile) or a ``mongodb://`` / ``mongodb+srv://`` URI."""
    mongo_db: str = field(default="retention", metadata=_env("RETENTION_MONGO_DB"))
    ttl: timedelta = field(default=timedelta(days=30), metadata=_env("RETENTION_TTL", parse_duration))
    """How long a stored response is kept before it is deleted automatically."""
    policy: Policy = field(default="standard", metadata=_env("RETENTION_POLICY"))
    """``standard`` honours ``store``; ``zero`` never stores anything."""
    tenant_secret: str | None = field(default=None, repr=False, metadata=_env("RETENTION_TENANT_SECRET"))
    tenant_header: str | None = field(default=None, metadata=_env("RETENTION_TENANT_HEADER"))
    max_body: int = field(default=16 * 1024**2, metadata=_env("RETENTION_MAX_BODY", parse_size))
    """Largest request body the middleware reads on the routes it inspects; larger gets 413."""
    store_failure: StoreFailureMode = field(default="serve", metadata=_env("RETENTION_STORE_FAILURE"))
    """With the store down: ``serve`` the answer unstored, or ``reject`` with 503 before the upstream."""
    mongo_timeout: timedelta = field(
        default=timedelta(seconds=5), metadata=_env("RETENTION_MONGO_TIMEOUT", parse_duration)
    )
    mongo_write_concern: str = field(default="majority", metadata=_env("RETENTION_MONGO_WRITE_CONCERN"))
    memory_budget: int = field(default=256 * 1024**2, metadata=_env("RETENTION_MEMORY_BUDGET", parse_size))
    """Byte budget of the memory store; when full it refuses new records instead of evicting."""
    log_guard: bool = field(default=True, metadata=_env("RETENTION_LOG_GUARD", parse_bool))
    """Redact in-flight request content from every log record in the process."""
    log_client_address: bool = field(default=False, metadata=_env("RETENTION_LOG_CLIENT_ADDRESS", parse_bool))
    upstream: str = field(default="http://127.0.0.1:8000", metadata=_env("RETENTION_UPSTREAM"))
    """Proxy only: the server the proxy forwards to."""
    upstream_timeout: timedelta = field(
        default=timedelta(minutes=10), metadata=_env("RETENTION_UPSTREAM_TIMEOUT", parse_duration)
    )
    """Proxy only: longest wait for the next byte from the upstream before answering 504."""
    upstream_connect_timeout: timedelta = field(
        default=timedelta(seconds=5), metadata=_env("RETENTION_UPSTREAM_CONNECT_TIMEOUT", parse_duration)
    )
    upstream_max_connections: int = field(default=1000, metadata=_env("RETENTION_UPSTREAM_MAX_CONNECTIONS", int))
    opt_in_tenants: frozenset[str] = field(default=frozenset(), metadata=_env("RETENTION_OPT_IN_TENANTS", parse_names))
    """Tenants (hashes as the access log prints them) whose content is logged to the store."""
    allow_request_opt_in: bool = field(default=False, metadata=_env("RETENTION_ALLOW_REQUEST_OPT_IN", parse_bool))
    content_ttl: timedelta = field(default=timedelta(days=30), metadata=_env("RETENTION_CONTENT_TTL", parse_duration))
    logged_models: frozenset[str] = field(default=frozenset(), metadata=_env("RETENTION_LOGGED_MODELS", parse_names))
    """Models whose traffic is always content-logged, and disclosed as such in ``/v1/models``."""
    # -- encryption at rest (crypto/) --
    encryption: str = field(default="auto", metadata=_env("RETENTION_ENCRYPTION"))
    """``auto`` (on when a master key is set), ``off``, ``master-key`` or ``caller-key``."""
    encryption_key: str | None = field(default=None, repr=False, metadata=_env("RETENTION_ENCRYPTION_KEY"))
    """Master keys, base64 of 32 random bytes each, newest first: ``new,old…``."""
    encryption_key_file: str | None = field(default=None, metadata=_env("RETENTION_ENCRYPTION_KEY_FILE"))
    # -- conversations (the Conversations API) --
    conversation_ttl: timedelta | None = field(
        default=None, metadata=_env("RETENTION_CONVERSATION_TTL", parse_duration)
    )
    """How long a conversation is kept after its last item was added; unset: the response TTL."""
    # -- responses backend (issue 14): how a Responses request reaches the upstream
    responses_backend: ResponsesBackendSetting = field(
        default="responses", metadata=_env("RETENTION_RESPONSES_BACKEND")
    )
    """``responses`` (the upstream serves it), ``chat`` (translate to Chat Completions) or ``auto`` (ask)."""
    # observability (issue 11): metrics, the proxy's probes, TLS to the upstream
    metrics: bool = field(default=True, metadata=_env("RETENTION_METRICS", parse_bool))
    """Count requests, tokens and store operations in prometheus_client's default registry."""
    metrics_tenant_label: bool = field(default=False, metadata=_env("RETENTION_METRICS_TENANT_LABEL", parse_bool))
    """Add per-tenant series (one per tenant id: mind the cardinality)."""
    metrics_max_models: int = field(default=50, metadata=_env("RETENTION_METRICS_MAX_MODELS", int))
    """Distinct model label values per process; later models are counted as ``other``."""
    metrics_path: str = field(default="/metrics", metadata=_env("RETENTION_METRICS_PATH"))
    health_path: str = field(default="/healthz", metadata=_env("RETENTION_HEALTH_PATH"))
    ready_path: str = field(default="/readyz", metadata=_env("RETENTION_READY_PATH"))
    """Proxy only: the paths it answers itself for Prometheus and liveness / readiness probes."""
    upstream_ca_bundle: str | None = field(default=None, metadata=_env("RETENTION_UPSTREAM_CA_BUNDLE"))
    """Proxy only: PEM file of the CAs an https:// upstream's certificate is checked against."""
    upstream_client_cert: str | None = field(default=None, metadata=_env("RETENTION_UPSTREAM_CLIENT_CERT"))
    upstream_client_key: str | None = field(default=None, metadata=_env("RETENTION_UPSTREAM_CLIENT_KEY"))
    """Proxy only: a client certificate (and its key, if not in the same file) for mutual TLS."""
    # -- hostile input: header limits, connection timeouts and cap; tenancy by default (issue 10) --
    tenancy: Tenancy = field(default="isolated", metadata=_env("RETENTION_TENANCY"))
    """``isolated``: callers are told apart by bearer token; ``shared``: one space for every caller."""
    max_header_bytes: int = field(default=32 * 1024, metadata=_env("RETENTION_MAX_HEADER_BYTES", parse_size))
    """Largest request head (request line and header lines); larger gets 431."""
    max_headers: int = field(default=200, metadata=_env("RETENTION_MAX_HEADERS", int))
    """Most header lines a request may carry; more gets 431."""
    header_timeout: timedelta = field(
        default=timedelta(seconds=10), metadata=_env("RETENTION_HEADER_TIMEOUT", parse_duration)
    )
    """Proxy only: longest a client may take to send a request's head before the connection is closed."""
    body_timeout: timedelta = field(
        default=timedelta(seconds=60), metadata=_env("RETENTION_BODY_TIMEOUT", parse_duration)
    )
    """Proxy only: longest silence while a request body is being read before answering 408."""
    idle_timeout: timedelta = field(
        default=timedelta(seconds=75), metadata=_env("RETENTION_IDLE_TIMEOUT", parse_duration)
    )
    """Proxy only: how long an idle keep-alive connection is kept open."""
    max_connections: int = field(default=1000, metadata=_env("RETENTION_MAX_CONNECTIONS", int))
    """Proxy only: most client connections open at once; one more is answered 503 and closed."""
    # Hostile input (issue 10): bounds on what one request can make the process hold or walk
    max_json_depth: int = field(default=128, metadata=_env("RETENTION_MAX_JSON_DEPTH", int))
    """Deepest nesting of arrays and objects accepted in an inspected JSON request body; deeper is a 400."""
    max_input_items: int = field(default=10_000, metadata=_env("RETENTION_MAX_INPUT_ITEMS", int))
    """Most input items one ``POST /v1/responses`` may carry; more is a 400 before the upstream is called."""

    def __post_init__(self) -> None:
        self._check_choice("policy", get_args(Policy))
        self._check_choice("store_failure", get_args(StoreFailureMode))
        self._check_choice("responses_backend", get_args(ResponsesBackendSetting))
        self._check_choice("tenancy", get_args(Tenancy))
        if not (self.store == "memory" or self.store.startswith(("mongodb://", "mongodb+srv://"))):
            raise SettingsError(
                "store (RETENTION_STORE): expected 'memory' or a mongodb:// or mongodb+srv:// URI, "
                f"got a value starting {self.store[:10]!r}"
            )
        for name in (
            "ttl", "content_ttl", "mongo_timeout", "upstream_timeout", "upstream_connect_timeout",
            "header_timeout", "body_timeout", "idle_timeout",
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise SettingsError(
                    f"{name} ({self._env_name(name)}): must be a positive duration such as 90s, 12h or 30d"
                )
        for name in (
            "max_body", "memory_budget", "upstream_max_connections",
            "max_header_bytes", "max_headers", "max_connections",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SettingsError(f"{name} ({self._env_name(name)}): must be a positive whole number")
        if not self.upstream.startswith(("http://", "https://")):
            raise SettingsError(
                "upstream (RETENTION_UPSTREAM): must be an http:// or https:// URL, e.g. http://127.0.0.1:8000"
            )
        if self.tenant_secret is not None and len(self.tenant_secret) < 16:
            raise SettingsError(
                "tenant_secret (RETENTION_TENANT_SECRET): use at least 16 characters of random text, "
                "e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        self._check_tenancy()
        concern = self.mongo_write_concern
        if concern != "majority" and not (concern.isdigit() and int(concern) >= 1):
            # w=0 is not offered: an unacknowledged delete could not honour "deleted means deleted".
            raise SettingsError(
                "mongo_write_concern (RETENTION_MONGO_WRITE_CONCERN): use 'majority' or a number of nodes (1 or more)"
            )
        if self.policy == "zero" and (self.opt_in_tenants or self.allow_request_opt_in or self.logged_models):
            raise SettingsError(
                "policy (RETENTION_POLICY) is zero, which never keeps content, but content logging is configured "
                "(RETENTION_OPT_IN_TENANTS, RETENTION_ALLOW_REQUEST_OPT_IN or RETENTION_LOGGED_MODELS); "
                "unset those or use RETENTION_POLICY=standard"
            )
        from .crypto.modes import check_encryption_settings  # here, not at the top: crypto reads settings

        check_encryption_settings(self)

        if self.conversation_ttl is not None and (
            not isinstance(self.conversation_ttl, timedelta) or self.conversation_ttl <= timedelta(0)
        ):
            raise SettingsError(
                "conversation_ttl (RETENTION_CONVERSATION_TTL): must be a positive duration such as 90s, 12h or 30d"
            )
        self._check_observability()
        self._check_hostile_input_bounds()

    def _check_observability(self) -> None:
        if (
            isinstance(self.metrics_max_models, bool)
            or not isinstance(self.metrics_max_models, int)
            or (self.metrics_max_models <= 0)
        ):
            raise SettingsError("metrics_max_models (RETENTION_METRICS_MAX_MODELS): must be a positive whole number")
        for name in ("metrics_path", "health_path", "ready_path"):
            if not getattr(self, name).startswith("/"):
                raise SettingsError(f"{name} ({self._env_name(name)}): must be a path starting with /, e.g. /readyz")
        if self.upstream_client_key and not self.upstream_client_cert:
            raise SettingsError(
                "upstream_client_key (RETENTION_UPSTREAM_CLIENT_KEY): set RETENTION_UPSTREAM_CLIENT_CERT as well"
            )

    def _check_tenancy(self) -> None:
        if self.tenancy == "shared" and self.tenant_secret:
            raise SettingsError(
                "tenancy (RETENTION_TENANCY) is shared, which puts every caller in one space, but "
                "RETENTION_TENANT_SECRET is set to tell callers apart; unset one of them"
            )
        if self.uses_mongodb and self.tenancy != "shared" and not (self.tenant_secret or self.tenant_header):
            # With a database, a secret made at start-up would change on restart and differ between
            # replicas; every caller would lose their stored responses. Make the operator choose.
            raise SettingsError(
                "tenancy (RETENTION_TENANCY): a MongoDB store needs RETENTION_TENANT_SECRET (callers told apart "
                "by their API key) or RETENTION_TENANT_HEADER (a trusted gateway names them); or set "
                "RETENTION_TENANCY=shared to let every caller read and delete every stored response"
            )

    def _check_hostile_input_bounds(self) -> None:
        for name, most in (("max_json_depth", 200), ("max_input_items", 10_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                # 200 levels leave room for the levels the store and input_items pages wrap around
                # a body, under the 254 that orjson serialises.
                raise SettingsError(f"{name} ({self._env_name(name)}): must be a whole number from 1 to {most}")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            raise SettingsError(
                f"{name} ({self._env_name(name)}): {getattr(self, name)!r} is not one of " + ", ".join(choices)
            )

    @staticmethod
    def _env_name(name: str) -> str:
        return str(_FIELDS[name].metadata["env"])

    @property
    def uses_mongodb(self) -> bool:
        return self.store != "memory"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RetentionSettings:
        """Read every ``RETENTION_*`` variable; keyword ``overrides`` win over the environment."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, spec in _FIELDS.items():
            env_name = spec.metadata["env"]
            if env_name not in source:
                continue
            text = source[env_name]
            parse = spec.metadata["parse"]
            if parse is None:
                values[name] = text.strip()
            elif parse is int:
                try:
                    values[name] = int(text)
                except ValueError:
                    raise SettingsError(f"{name} ({env_name}): {text!r} is not a whole number") from None
            else:
                values[name] = parse(text, name=f"{name} ({env_name})")
        values.update(overrides)
        return cls(**values)

    def public_view(self) -> dict[str, str]:
        """The effective settings as text for start-up banners: secrets and URI passwords hidden."""
        view: dict[str, str] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if name in ("tenant_secret", "encryption_key"):
                text = "(set)" if value else "(unset)"
            elif name == "store":
                text = _hide_uri_password(value)
            elif isinstance(value, timedelta):
                text = format_duration(value)
            elif name in ("max_body", "memory_budget", "max_header_bytes"):
                text = format_size(value)
            elif isinstance(value, frozenset):
                text = ",".join(sorted(value)) or "(none)"
            elif isinstance(value, bool):
                text = "true" if value else "false"  # as RETENTION_* variables spell them
            elif value is None:
                text = "(unset)"
            else:
                text = str(value)
            view[name] = text
        return view


def _hide_uri_password(uri: str) -> str:
    return re.sub(r"(mongodb(?:\+srv)?://[^:/@]+):[^@]*@", r"\1:***@", uri)


_FIELDS = {spec.name: spec for spec in dataclasses.fields(RetentionSettings)}
