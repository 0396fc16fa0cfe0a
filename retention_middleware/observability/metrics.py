"""Prometheus metrics, named after the OpenTelemetry GenAI semantic conventions where one fits.

Every collector lives in ``prometheus_client``'s default registry, so in-process the metrics appear
on the ``/metrics`` the host (vLLM) already serves; ``retention-proxy`` serves them itself. With
``PROMETHEUS_MULTIPROC_DIR`` set before the first import (the proxy does so for ``--workers`` > 1),
prometheus_client keeps the values in files every worker writes and ``/metrics`` sums them.

Labels never carry content. The model label is the one value that comes from a request, so it is
bounded: only a model the upstream answered with a 2xx gets its own label, at most
``metrics_max_models`` distinct names per process (later ones count as ``other``), each cut to 64
characters of a plain charset. Tenants are a label only when the operator opts in
(``RETENTION_METRICS_TENANT_LABEL``), on series of their own, because they multiply cardinality.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# The OpenTelemetry GenAI duration buckets (seconds), which also suit time to first byte.
_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_MODEL_LENGTH = 64
_MODEL_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+-]")
OTHER_MODEL = "other"
NO_MODEL = "none"
TOKEN_TYPES = ("input", "output", "cached", "reasoning")

REQUEST_DURATION = Histogram(
    "gen_ai_server_request_duration_seconds",
    "Time from a request's arrival to its last response byte, by route and status class.",
    ("route", "status_class"),
    buckets=_BUCKETS,
)
TIME_TO_FIRST_BYTE = Histogram(
    "retention_time_to_first_byte_seconds",
    "Time from a request's arrival to the first response body byte sent to the client, by route.",
    ("route",),
    buckets=_BUCKETS,
)
REQUESTS = Counter(
    "retention_requests",
    "Requests answered, by route, status class and error code ('none' when there was none).",
    ("route", "status_class", "error"),
)
TOKENS = Counter(
    "gen_ai_server_token_usage",
    "Tokens counted from upstream usage, by gen_ai.token.type and model.",
    ("gen_ai_token_type", "gen_ai_request_model"),
)
IN_FLIGHT = Gauge(
    "retention_requests_in_flight",
    "HTTP requests being served now.",
    multiprocess_mode="livesum",
)
STORED_RESPONSES = Counter(
    "retention_stored_responses",
    "Stored-response operations: written, read, deleted, erased (per response) and failed writes.",
    ("operation",),
)
GUARD_REDACTIONS = Counter(
    "retention_log_guard_redactions",
    "Log records the log guard changed because they held in-flight request content.",
)
IGNORED_OPT_INS = Counter(
    "retention_ignored_opt_in_headers",
    "x-retention-opt-in headers ignored because RETENTION_ALLOW_REQUEST_OPT_IN is off.",
)

# Routes whose 200 answer is one stored-response operation.
_READS = {"responses.retrieve": "read", "responses.input_items": "read", "responses.delete": "deleted"}

_tenant_lock = threading.Lock()
_tenant_metrics: tuple[Counter, Counter] | None = None


def _tenant_series() -> tuple[Counter, Counter]:
    # Registered only when a middleware opts in, so by default no series has a tenant label at all.
    global _tenant_metrics
    with _tenant_lock:
        if _tenant_metrics is None:
            _tenant_metrics = (
                Counter("retention_tenant_requests", "Requests by tenant id (opt-in).", ("tenant",)),
                Counter(
                    "gen_ai_server_tenant_token_usage",
                    "Tokens by tenant id and gen_ai.token.type (opt-in).",
                    ("tenant", "gen_ai_token_type"),
                ),
            )
        return _tenant_metrics


class _ModelLabels:
    """The first ``limit`` model names seen in this process keep their own label; later ones are ``other``."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, model: str | None, limit: int) -> str:
        if not model:
            return NO_MODEL
        value = _MODEL_UNSAFE.sub("_", model[:_MODEL_LENGTH])
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= limit:
                return OTHER_MODEL
            self._seen.add(value)
        return value


_models = _ModelLabels()

# labels() validates, locks and builds a key on every call; the children it returns are stable, so
# each label combination is looked up once. Every key is bounded (routes, status classes, error
# codes, token types, bounded model labels), and so is this cache.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def count_redaction() -> None:
    GUARD_REDACTIONS.inc()


def count_ignored_opt_in() -> None:
    IGNORED_OPT_INS.inc()


def count_stored(operation: str, amount: int = 1) -> None:
    if amount > 0:
        STORED_RESPONSES.labels(operation).inc(amount)


class RequestMetrics:
    """What the middleware reports per request; one per middleware, holding its label options."""

    def __init__(self, *, enabled: bool, tenant_label: bool, max_models: int) -> None:
        self.enabled = enabled
        self._max_models = max_models
        self._tenant = _tenant_series() if enabled and tenant_label else None

    def started(self) -> None:
        if self.enabled:
            IN_FLIGHT.inc()

    def finished(self, route: str, record: Any) -> None:
        """Count one finished request from its access record (``logs.access_log.AccessRecord``)."""
        if not self.enabled:
            return
        IN_FLIGHT.dec()
        now = time.perf_counter()
        status = record.status
        status_class = f"{status // 100}xx" if status else "none"
        _child(REQUESTS, route, status_class, record.error or "none").inc()
        _child(REQUEST_DURATION, route, status_class).observe(now - record.started)
        if record.first_byte_at is not None:
            _child(TIME_TO_FIRST_BYTE, route).observe(record.first_byte_at - record.started)
        if record.stored is True:
            _child(STORED_RESPONSES, "written").inc()
        elif record.stored is False and record.error in ("store_unavailable", "store_full"):
            _child(STORED_RESPONSES, "failed").inc()
        elif status == 200 and route in _READS:
            _child(STORED_RESPONSES, _READS[route]).inc()
        usage = record.usage
        if self._tenant is not None:
            self._tenant[0].labels(record.tenant).inc()
        if not usage:
            return
        # A model name is the client's text until the upstream has accepted it as a model it serves.
        model = _models.label(record.model, self._max_models) if status and 200 <= status < 300 else OTHER_MODEL
        for kind in TOKEN_TYPES:
            count = usage.get(f"{kind}_tokens")
            if count:
                _child(TOKENS, kind, model).inc(count)
                if self._tenant is not None:
                    self._tenant[1].labels(record.tenant, kind).inc(count)
