"""What one attempt came to: the receiver's answer read and classified, or the
failure described in words an operator can act on.

The sender (:mod:`bridge.delivery.send`) makes the request; everything here
turns what came back (or what went wrong) into an :class:`AttemptResult`,
with every secret the request carried masked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import aiohttp
import structlog
from yarl import URL

from bridge.config import Subscription
from bridge.core.outcomes import AttemptResult
from bridge.core.retry import parse_retry_after
from bridge.core.settings.units import format_duration
from bridge.delivery.excerpts import MASK, masked_excerpt
from bridge.delivery.http1 import (
    CUT_OFF,
    DRAIN_LIMIT,
    NO_RESPONSE,
    TLS_FAILED,
    TLS_UNTRUSTED,
    connect_failure,
)
from bridge.errors import BridgeError, HttpFailure, TargetRefused
from bridge.observe.logs import scrub_secrets

log = structlog.get_logger("bridge.delivery.send")


class Answered(Protocol):
    """What :func:`classify` reads of an answer; both HTTP clients' answers have it."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    """At most ``cap`` bytes of a body; then drain a little so the connection can be reused.

    (aiohttp's side; the lean client does the same in :class:`bridge.delivery.http1.Connection`.)
    """
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        chunk = await content.read(cap - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    drained = 0
    while drained <= DRAIN_LIMIT and not content.at_eof():
        chunk = await content.read(DRAIN_LIMIT)
        if not chunk:
            break
        drained += len(chunk)
    return b"".join(chunks)


def classify(
    response: Answered,
    content: bytes,
    kept: int,
    started: float,
    secrets: Sequence[str] = (),
) -> AttemptResult:
    status = response.status
    error: str | None = None
    outcome: Literal["delivered", "failed", "gone"] = "failed"
    retry_after: float | None = None
    if 200 <= status < 300:
        outcome = "delivered"
    elif status == 410:
        outcome = "gone"
        error = "HTTP 410 Gone: the endpoint asked for no more deliveries"
    elif 300 <= status < 400:
        location = response.headers.get("Location")
        error = (
            f"redirect to {location[:200]} not followed"
            if location
            else f"redirect (HTTP {status}) not followed"
        )
    else:
        error = f"HTTP {status}"
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
    return AttemptResult(
        outcome=outcome,
        status_code=status,
        latency_ms=(time.perf_counter() - started) * 1000,
        error=error,
        # Kept, listed by the API and logged: a receiver echoing our headers must not leak them.
        response_excerpt=masked_excerpt(content, kept, secrets),
        response_body=content,
        retry_after=retry_after,
        content_type=response.headers.get("Content-Type"),
    )


def unexpected(
    started: float, step: str, exc: Exception, subscription: Subscription
) -> AttemptResult:
    """A failed attempt for an error no part of the sender expected: it stays one attempt.

    The reason names the step and the error's type and text, with every registered
    secret masked (a header value can be a secret, and errors quote what they refuse).
    """
    text = str(exc)
    for value in subscription.headers.values():
        secret = value.get_secret_value()
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = scrub_secrets(text)[:200]
    reason = f"error while {step}: {type(exc).__name__}" + (f": {text}" if text else "")
    return failure(started, reason)


def warn_if_refused(subscription: Subscription, exc: BridgeError) -> None:
    """A refused target is a configuration matter: a warning naming the key that allows it."""
    if isinstance(exc, TargetRefused):
        log.warning(
            "delivery refused: the target is not a public address",
            subscription=subscription.name,
            reason=str(exc),
            allowed_by="security.allow_private_targets: true",
        )


def failure(started: float, error: str) -> AttemptResult:
    return AttemptResult.failure(error, latency_ms=(time.perf_counter() - started) * 1000)


# Fixed reasons by error type; the first match wins, so subclasses come first.
_FIXED_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientConnectorCertificateError, TLS_UNTRUSTED),
    (aiohttp.ClientSSLError, TLS_FAILED),
    (aiohttp.ServerDisconnectedError, NO_RESPONSE),
    (aiohttp.ClientPayloadError, CUT_OFF),
    (aiohttp.InvalidURL, "the URL is not valid"),
)


def describe(exc: BaseException, subscription: Subscription) -> str:
    """A short reason for a failed attempt; never the URL's query or a header value."""
    if isinstance(exc, asyncio.TimeoutError):
        return f"timeout after {format_duration(subscription.timeout)}"
    if isinstance(exc, HttpFailure):  # the lean client words its own reasons
        return str(exc)
    return _client_error(exc, subscription)


def _client_error(exc: BaseException, subscription: Subscription) -> str:
    reason = next((text for kind, text in _FIXED_REASONS if isinstance(exc, kind)), None)
    if reason is not None:
        return reason
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {URL(subscription.url).host} failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return connect_failure(exc.os_error)
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or type(exc).__name__}"
    return f"HTTP client error ({type(exc).__name__})"
