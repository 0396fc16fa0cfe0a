"""Rewriting one log record so that no registered content survives in it, keeping its shape.

Formatters read more than the message: uvicorn's access formatter unpacks ``record.args`` into five
values, others look up keys of a dict ``args``. So content is redacted *inside* each argument and
the record keeps a tuple of the same length (or a dict with the same keys): a string argument
becomes its redacted text, any other object a stand-in whose ``str``, ``repr`` and ``format`` are
its own renderings redacted. Numbers, booleans and None are never content and stay as they are.

When content survives only in the combination (a stretch running from the template into an
argument) or the record cannot be formatted at all, the message becomes the redacted text of the
whole record, with one ``%.0s`` per argument so that ``getMessage()`` still works, and every
argument that could render text becomes ``[redacted]``.

Whatever goes wrong while checking (a renderer that raises, an argument nested too deeply to
render) fails closed: the record is blanked, never passed on unchecked.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from numbers import Number
from typing import Any, Protocol

from .redaction import REDACTED

# Attributes every LogRecord has; anything else arrived through ``extra=`` and may hold content.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class Redactor(Protocol):
    @property
    def fail_closed(self) -> bool: ...

    def redact(self, text: str) -> str: ...

    def holds(self, argument: str) -> bool: ...


class Shown:
    """Stands in for a log argument whose rendering held content."""

    __slots__ = ("_str", "_repr")

    def __init__(self, as_str: str, as_repr: str) -> None:
        self._str = as_str
        self._repr = as_repr

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr

    def __format__(self, spec: str) -> str:
        return format(self._str, spec)


_BLANK = Shown(REDACTED, REDACTED)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, Number)  # bool, int, float, Decimal, numpy scalars


def _str_is_repr(value: Any) -> bool:
    return type(value).__str__ is object.__str__  # type: ignore[comparison-overlap]


def _render(value: Any, redactor: Redactor) -> tuple[Any, Any]:
    """What formatting would show of ``value`` as it is, and ``value`` with content redacted.

    An object is rendered once: its ``str``/``repr`` may be costly or have effects (it may log)."""
    if _plain(value):
        return value, value
    if isinstance(value, str):
        if redactor.holds(value.strip()):
            return value, REDACTED
        redacted = redactor.redact(value)
        return value, value if redacted == value else redacted
    try:
        as_str = str(value)
        as_repr = as_str if _str_is_repr(value) else repr(value)
    except Exception:  # a deeply nested value (RecursionError) or a renderer that raises
        return _BLANK, _BLANK
    shown = Shown(as_str, as_repr)
    shown_str, shown_repr = redactor.redact(as_str), redactor.redact(as_repr)
    if shown_str == as_str and shown_repr == as_repr:
        return shown, value
    return shown, Shown(shown_str, shown_repr)


def _blanked(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(value if _plain(value) else REDACTED for value in args)
    if isinstance(args, Mapping):
        return {key: value if _plain(value) else REDACTED for key, value in args.items()}
    return args


def _template(text: str, args: Any) -> str:
    """A message that renders as ``text`` whatever ``args`` it is formatted with."""
    if not args:
        return text
    escaped = text.replace("%", "%%")
    return escaped + "%.0s" * len(args) if isinstance(args, tuple) else escaped


def blank(record: logging.LogRecord, why: str) -> None:
    """Replace everything in ``record`` that could carry text, keeping its shape."""
    record.args = _blanked(record.args)
    record.msg = _template(f"{REDACTED} ({why})", record.args)
    record.exc_info = record.exc_text = record.stack_info = None
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_RECORD_ATTRIBUTES and isinstance(value, str):
            setattr(record, name, REDACTED)


def rewrite_record(record: logging.LogRecord, redactor: Redactor) -> None:
    """Rewrite ``record`` in place so that no content ``redactor`` knows survives in it."""
    if redactor.fail_closed:
        blank(record, "a request too large to match against is in flight")
        return
    try:
        _rewrite_message(record, redactor)
        _rewrite_the_rest(record, redactor)
    except Exception:  # RecursionError included: never let a record through unchecked
        blank(record, "a log record the guard could not check")


def _format(template: str, shown: Any, args: Any) -> str:
    """``template % args``, through the renderings already made; a template that needs more than a
    rendering (``%d`` of an object with ``__index__``) is formatted with the arguments themselves."""
    try:
        return str(template % shown)
    except (TypeError, ValueError):
        return str(template % args)


def _rewrite_message(record: logging.LogRecord, redactor: Redactor) -> None:
    args = record.args
    template = record.msg if isinstance(record.msg, str) else str(record.msg)
    if not args:
        redacted_template = redactor.redact(template)
        if redacted_template != template:
            record.msg = redacted_template
        return  # else the record keeps its own message object for later filters
    if isinstance(args, tuple):
        pairs = [_render(value, redactor) for value in args]
        new_args: Any = tuple(new for _, new in pairs)
        changed = any(new is not old for new, old in zip(new_args, args, strict=True))
        # The same record as formatting would show it, each object rendered once already.
        shown_args: Any = tuple(shown for shown, _ in pairs)
        checked_args: Any = tuple(
            new if new is not old else shown for (shown, new), old in zip(pairs, args, strict=True)
        )
    elif isinstance(args, Mapping):
        rendered = {key: _render(value, redactor) for key, value in args.items()}
        new_args = {key: new for key, (_, new) in rendered.items()}
        changed = any(new_args[key] is not value for key, value in args.items())
        shown_args = {key: shown for key, (shown, _) in rendered.items()}
        checked_args = {key: new if new is not args[key] else shown for key, (shown, new) in rendered.items()}
    else:
        new_args, changed, shown_args, checked_args = args, False, args, args
    try:
        message = _format(template, shown_args, args)
    except Exception:
        # logging would print the arguments to stderr on this failure; they may hold content.
        record.args = _blanked(new_args)
        record.msg = _template(f"{redactor.redact(template)} {REDACTED}", record.args)
        return
    redacted_message = redactor.redact(message)
    if not changed and redacted_message == message:
        return  # what any handler prints holds no content
    redacted_template = redactor.redact(template)
    candidate = redacted_template if redacted_template != template else record.msg
    try:
        checked: str | None = _format(str(candidate), checked_args, new_args)
    except Exception:
        checked = None
    if checked is not None and redactor.redact(checked) == checked:
        record.msg, record.args = candidate, new_args
        return
    # Content that spans the template and an argument, or a stand-in the template cannot format.
    record.args = _blanked(new_args)
    record.msg = _template(redacted_message, record.args)


def _rewrite_the_rest(record: logging.LogRecord, redactor: Redactor) -> None:
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        exc_text = redactor.redact(record.exc_text)
        if exc_text != record.exc_text:
            record.exc_text = exc_text
            # Handlers that format exc_info themselves (error trackers, say) would bypass the redacted
            # text, so the exception object goes; a traceback without content keeps it.
            record.exc_info = None
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_RECORD_ATTRIBUTES and isinstance(value, str):
            redacted = redactor.redact(value)
            if redacted != value:
                setattr(record, name, redacted)
