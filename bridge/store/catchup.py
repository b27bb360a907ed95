"""Catching up after an outage, and sending now: the store's side.

When a subscription's receiver answers again after endpoint-wide failures,
the deliveries waiting for a retry slot because of such a failure should not
wait for it. The store keeps what that needs on each delivery (written with
every attempt's outcome, see :func:`bridge.core.retry.schedule_after`): its
schedule *step*, whether its last failure was *endpoint-wide*, the end of a
*Retry-After* pause, and whether it was made due *early*. On a subscription
it keeps ``failing_since`` (the stored failing streak, shared by every
instance) and, while a catch-up is not finished, ``catching_up``: when the
streak ended.

- :meth:`CatchUpStore.end_streak` ends the stored streak, once: of several
  instances seeing successes at once, exactly one call finds it set. That
  call marks the subscription as catching up, in the same statement.
- :meth:`CatchUpStore.catch_up` releases one chunk (at most
  :data:`CATCH_UP_CHUNK`, oldest first) of the deliveries that waited after
  an endpoint-wide failure recorded before the streak ended and that no
  Retry-After holds any longer: due now, early. The normal claims send them,
  so rate and concurrency limits and per-device order hold. The chunk that
  finds fewer than a full chunk clears the mark, in its own transaction.
  Nothing in memory matters: a kill between chunks leaves the mark, and
  whoever reads it next (this instance restarted, or another) goes on.
- :meth:`CatchUpStore.send_now` and :meth:`CatchUpStore.flush` are the
  operator's: one pending delivery, or all of a subscription, due now and
  early, unless a live lease holds it (an attempt is in flight): its token is
  never touched.

The SQL lives in ``bridge/store/{sqlite,postgres}/catchup.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from bridge.store.rows import AttemptOutcome, CatchUp, DeliveryStatus

__all__ = [
    "CATCH_UP_CHUNK",
    "CATCH_UP_OPERATIONS",
    "FLUSH_MAX_CHUNKS",
    "CatchUpStore",
    "SendNow",
    "schedule_values",
    "send_now_answer",
]

CATCH_UP_CHUNK = 500
"""The most deliveries one catch-up transaction makes due (and one flush chunk)."""
FLUSH_MAX_CHUNKS = 10_000
"""How many chunks one ``flush`` call releases at most (five million deliveries)."""

CATCH_UP_OPERATIONS = frozenset(["catch_up", "end_streak", "flush_chunk", "send_now"])


class SendNow(StrEnum):
    """What ``send_now`` found."""

    DUE = "due"  # pending, and now due
    IN_FLIGHT = "in_flight"  # pending under a live lease: its attempt decides
    FINISHED = "finished"  # delivered or dead: a retry requeues it instead


def schedule_values(outcome: AttemptOutcome) -> tuple[int | None, int, float | None]:
    """What an attempt's outcome tells a later catch-up, written on its delivery with
    the outcome: the schedule's step (None keeps the stored one), whether the failure
    was endpoint-wide (0 or 1, as both stores keep it), the end of a Retry-After pause."""
    pending = outcome.status is DeliveryStatus.PENDING
    wide = int(pending and outcome.endpoint_wide)
    return outcome.retry_step, wide, outcome.not_before if pending else None


def send_now_answer(found: Sequence[Any] | None) -> SendNow | None:
    """What ``send_now`` answers for a delivery's (status, lease lapsed) row; DUE: the
    caller makes it due."""
    if found is None:
        return None
    if found[0] != "pending":
        return SendNow.FINISHED
    return SendNow.DUE if found[1] else SendNow.IN_FLIGHT


class CatchUpStore:
    """The store's catch-up and send-now methods, each one transaction; a base of
    :class:`bridge.store.base.Store`, which runs the backend's operations."""

    takeover_after: float

    async def _write(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def end_streak(self, subscription: str, *, now: float) -> bool:
        """End the subscription's stored failing streak at ``now`` (its last success).

        True only for the call that found the streak set: that call also marks the
        subscription as catching up since ``now`` (see :meth:`catch_up`). False when
        there was no stored streak (another instance ended it, or none began).
        """
        ended: bool = await self._write("end_streak", subscription, now)
        return ended

    async def catch_up(
        self,
        subscription: str,
        *,
        now: float,
        after: tuple[float, str] | None = None,
        limit: int = CATCH_UP_CHUNK,
    ) -> CatchUp:
        """One chunk of the subscription's catch-up, if it is marked as catching up.

        Makes due at ``now`` (and early) up to ``limit`` pending deliveries, oldest
        first and after the cursor ``after``, whose last failure was endpoint-wide
        and recorded before the streak ended, that wait for a later slot, and whose
        Retry-After pause (if any) is over. When fewer are found, the mark is
        cleared and the result is ``done``. A subscription failing again (a new
        streak) has its mark cleared at once: the end of that streak catches up.
        """
        found: CatchUp = await self._write("catch_up", subscription, now, after, limit)
        return found

    async def send_now(self, delivery_id: str, *, now: float) -> SendNow | None:
        """Make a pending delivery due now (and early), unless a live lease holds it;
        None for an unknown delivery. A lease that has lapsed (its holder is dead,
        or its time is over) does not hold it; its fencing token is left alone."""
        found: SendNow | None = await self._write("send_now", delivery_id, now, self.takeover_after)
        return found

    async def flush(self, subscription: str, *, now: float) -> int:
        """Make every pending delivery of the subscription due now (and early), but those
        under a live lease; returns how many. One bounded chunk per transaction."""
        released = 0
        for _ in range(FLUSH_MAX_CHUNKS):
            chunk: int = await self._write(
                "flush_chunk", subscription, now, self.takeover_after, CATCH_UP_CHUNK
            )
            released += chunk
            if chunk < CATCH_UP_CHUNK:
                break
        return released
