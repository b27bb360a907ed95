"""The retry schedule: what a delivery becomes after one attempt.

Pure functions: the caller passes ``now`` and a random number ``rand`` in
``[0, 1)``, so every decision is reproducible and testable with hypothesis.

- 2xx: delivered.
- 410 Gone: dead with reason ``gone``; the dispatcher disables the subscription.
- anything else (3xx, 408, 429, other 4xx, 5xx, timeouts, connection and TLS
  errors): pending again, due after the next delay of the schedule with
  ±jitter, or later when the receiver asked for it with ``Retry-After``
  (honoured up to ``retry.retry_after_cap``); dead with reason ``exhausted``
  when the schedule has no delay left.

What the schedule remembers of a pending delivery is its *step*: how many
delays it has used. An attempt made before its slot (a catch-up after the
receiver came back, an operator's "send now") that fails does not use one up:
the delivery waits the delay of the step it was on, again
(:func:`schedule_after`). :func:`endpoint_wide` tells a failure of the whole
receiver (refused, reset, timed out, 5xx), which a catch-up may hurry, from
one about the delivery itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from bridge.core.outcomes import AttemptOutcome, AttemptResult, DeliveryStatus

if TYPE_CHECKING:
    from bridge.core.settings.models import RetrySettings

__all__ = [
    "ENDPOINT_WIDE_ERRORS",
    "decide",
    "endpoint_wide",
    "next_delay",
    "parse_retry_after",
    "schedule_after",
]

_DELTA_SECONDS = re.compile(r"^-?[0-9]+$")

ENDPOINT_WIDE_ERRORS = (
    "connection refused",
    "connection failed",  # reset, unreachable (the sender words a failed connect so)
    "network error",
    "timeout",
    "the server closed the connection",  # reset before any answer
    "the response body was cut off",
)
"""How the sender's reasons begin for an attempt no receiver answered: its address
refused or dropped the connection, or it did not answer in time."""


def next_delay(
    attempts_made: int, schedule: Sequence[float], jitter: float, rand: float
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` when none is left.

    ``schedule[i]`` is the delay before attempt ``i + 2``, so after the first
    attempt (``attempts_made=1``) the delay is ``schedule[0]``. Jitter spreads
    retries of many deliveries that failed together, so a recovering endpoint
    is not hit by all of them in the same second.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made counts the attempt just made; it starts at 1")
    index = attempts_made - 1
    if index >= len(schedule):
        return None
    rand = min(max(rand, 0.0), 1.0)
    jitter = min(max(jitter, 0.0), 1.0)
    return max(0.0, schedule[index] * (1.0 + jitter * (2.0 * rand - 1.0)))


def decide(
    result: AttemptResult,
    *,
    attempts_made: int,
    retry: RetrySettings,
    now: float,
    rand: float,
) -> AttemptOutcome:
    """The delivery's next state after ``result`` (``attempts_made`` includes it)."""
    if result.outcome == "delivered":
        return AttemptOutcome(DeliveryStatus.DELIVERED)
    if result.outcome == "gone":
        return AttemptOutcome(DeliveryStatus.DEAD, reason="gone")
    delay = next_delay(attempts_made, retry.schedule, retry.jitter, rand)
    if delay is None:
        return AttemptOutcome(DeliveryStatus.DEAD, reason="exhausted")
    if result.retry_after is not None:
        # The receiver knows its own recovery time better than the schedule,
        # but it may not park a delivery for longer than the cap.
        delay = max(delay, min(max(result.retry_after, 0.0), retry.retry_after_cap))
    return AttemptOutcome(DeliveryStatus.PENDING, next_attempt_at=now + delay)


def endpoint_wide(result: AttemptResult) -> bool:
    """Whether a failed attempt says the receiver as a whole did not take it (refused,
    reset, timed out, a 5xx), as every delivery to it would have failed, rather than
    something about this one (a 4xx, a redirect, TLS, a refused address)."""
    if result.outcome != "failed":
        return False
    if result.status_code is not None:
        return result.status_code >= 500
    return (result.error or "").startswith(ENDPOINT_WIDE_ERRORS)


def schedule_after(
    result: AttemptResult,
    *,
    steps: int,
    early: bool,
    retry: RetrySettings,
    now: float,
    rand: float,
) -> AttemptOutcome:
    """The delivery's next state after ``result``, from the schedule's point of view.

    ``steps`` counts the schedule's delays the delivery has used; ``early`` says
    the attempt was made before its slot (a catch-up, an operator's "send now").
    A normal failure uses the next delay; an early one waits the delay of the
    step it was on again, so hurrying a delivery never brings it closer to dead.
    A pending outcome carries the new step, whether the failure was endpoint-wide
    and the end of a Retry-After pause (see :func:`endpoint_wide`).
    """
    made = steps if early and steps >= 1 else steps + 1
    outcome = decide(result, attempts_made=made, retry=retry, now=now, rand=rand)
    if outcome.status is not DeliveryStatus.PENDING:
        return outcome
    not_before = None
    if result.retry_after is not None:
        not_before = now + min(max(result.retry_after, 0.0), retry.retry_after_cap)
    return replace(
        outcome, retry_step=made, endpoint_wide=endpoint_wide(result), not_before=not_before
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` a ``Retry-After`` value asks to wait.

    Accepts delta-seconds (``120``) and an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``). Garbage is ``None``; a negative delay
    or a date in the past is ``0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        seconds = float(text)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 dates are GMT; "-0000" parses as naive.
        moment = moment.replace(tzinfo=UTC)
    try:
        delta = moment.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, delta) if math.isfinite(delta) else None
