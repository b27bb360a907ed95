"""What every admin API handler shares: reading query parameters, answering JSON.

A parameter a caller got wrong is an :class:`~bridge.errors.OperatorError`
(answered 400 with its name and the reason).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web

from bridge.core.events import format_timestamp
from bridge.errors import OperatorError, StoreError

__all__ = [
    "MAX_LIMIT",
    "cursor_errors",
    "enum_param",
    "int_param",
    "iso",
    "json_response",
    "page_limit",
    "parse_time",
    "progress_json",
]

MAX_LIMIT = 500
"""The largest page any list answers."""

E = TypeVar("E", bound=Enum)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else format_timestamp(datetime.fromtimestamp(epoch, UTC))


class _Retried(Protocol):
    """A delivery or an outbox message: something tried until it is done or dead."""

    @property
    def status(self) -> Enum: ...
    @property
    def attempts(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def next_attempt_at(self) -> float | None: ...


def progress_json(item: _Retried) -> dict[str, Any]:
    """Where a delivery or an outbox message stands, as the API shows both: the next
    attempt's time only while it is pending."""
    pending = item.status.value == "pending"
    return {
        "status": item.status.value,
        "attempts": item.attempts,
        "created_at": iso(item.created_at),
        "next_attempt_at": iso(item.next_attempt_at) if pending else None,
    }


def parse_time(text: str, name: str) -> float:
    """An RFC 3339 time (``2026-11-22T04:36:14Z``) or UNIX epoch seconds."""
    try:
        epoch = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(epoch):
            raise OperatorError(f"{name}: not a finite time")
        return epoch
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OperatorError(f"{name}: not an RFC 3339 time or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OperatorError(f"{name}: not an integer") from None
    if not low <= value <= high:
        raise OperatorError(f"{name}: must be between {low} and {high}")
    return value


def page_limit(request: web.Request) -> int:
    """A list's ``limit``: 50 unless asked, at most :data:`MAX_LIMIT`."""
    return int_param(request, "limit", 50, low=1, high=MAX_LIMIT)


def enum_param(raw: object, kind: type[E], name: str) -> E | None:
    """One of an enumeration's values, or None when the parameter is absent."""
    if raw is None:
        return None
    try:
        return kind(str(raw))
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise OperatorError(f"{name}: must be one of {choices}") from None


@contextlib.contextmanager
def cursor_errors(cursor: str | None) -> Iterator[None]:
    """A cursor is opaque and the store's to decode: a bad one is the caller's error."""
    try:
        yield
    except StoreError as exc:
        if cursor is not None and "cursor" in str(exc):
            raise OperatorError("cursor: not a cursor this API gave out") from None
        raise
