"""What an attempt came to and what the delivery becomes: plain values, no I/O.

The sender produces an :class:`AttemptResult`; the retry schedule
(:mod:`bridge.core.retry`) turns it into an :class:`AttemptOutcome`; the store
records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["AttemptOutcome", "AttemptResult", "DeliveryStatus"]


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at (a retry, or not yet tried)
    DELIVERED = "delivered"
    DEAD = "dead"  # out of attempts, too old, or refused for good; kept and replayable


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What the delivery becomes after an attempt."""

    status: DeliveryStatus
    next_attempt_at: float | None = None  # for PENDING
    reason: str | None = None  # for DEAD: "exhausted", "gone", "too_old"
    # For PENDING, what the next decision and a catch-up need (see bridge.core.retry):
    retry_step: int | None = None  # schedule delays used so far; None leaves the stored one
    endpoint_wide: bool = False  # it failed as every delivery to its receiver would
    not_before: float | None = None  # the end of the pause a Retry-After asked for


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt came to."""

    outcome: Literal["delivered", "failed", "gone"]
    status_code: int | None
    latency_ms: float
    error: str | None  # why it failed, in words; None when delivered
    response_excerpt: str | None  # first limits.response_body_kept bytes, decoded leniently
    response_body: bytes | None  # as read: up to 1 MiB in pipe mode, else the excerpt's bytes
    retry_after: float | None  # seconds, from Retry-After on 429/503
    content_type: str | None

    @classmethod
    def failure(cls, error: str, *, latency_ms: float) -> AttemptResult:
        """An attempt that got no answer: nothing sent, or no response read."""
        return cls(
            outcome="failed",
            status_code=None,
            latency_ms=latency_ms,
            error=error,
            response_excerpt=None,
            response_body=None,
            retry_after=None,
            content_type=None,
        )
