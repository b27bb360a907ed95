"""Retention: the periodic purge of finished deliveries and the expiry of stale events.

Every ``retention.interval`` the :class:`Retention` task asks the store to
delete delivered deliveries older than ``retention.delivered`` and dead ones
older than ``retention.dead`` (with their attempts and orphaned events), and
to turn pending deliveries held longer than ``retention.max_event_age``
into dead ones with reason ``too_old``; audit rows older than
``retention.audit`` go too, and the names of deleted API subscriptions are
freed once their deliveries are past retention. Age counts from when the bridge
received the event (an operator's retry and the end of a pause restart or
stop the clock), never from the device's clock: a device whose clock says
2001 is delivered like any other. It runs as its own task and each store
call is one short transaction, so delivery never waits for it.

The bounds are a pure function of the settings and ``now``
(:func:`retention_bounds`); :func:`too_old` is the check the dispatcher makes
before each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bridge.config import RetentionSettings
from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.store.base import Store

__all__ = [
    "TOO_OLD_ERROR",
    "Bounds",
    "Retention",
    "SweepResult",
    "retention_bounds",
    "too_old",
]

log = get_logger("hookbridge.retention")

TOO_OLD_ERROR = "event older than retention.max_event_age"
"""The error recorded on an attempt refused because its event is too old."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """UNIX times: what finished (or occurred) before each bound goes."""

    delivered_before: float
    dead_before: float
    received_before: float


def retention_bounds(settings: RetentionSettings, now: float) -> Bounds:
    """The purge and expiry bounds for one sweep at ``now``."""
    return Bounds(
        delivered_before=now - settings.delivered,
        dead_before=now - settings.dead,
        received_before=now - settings.max_event_age,
    )


def too_old(age_start: float, *, now: float, max_event_age: float) -> bool:
    """True when a delivery whose age counts from ``age_start`` must no longer be sent."""
    return age_start < now - max_event_age


@dataclass(frozen=True, slots=True)
class SweepResult:
    purged: int
    expired: dict[str, int]  # per subscription


Expired = Callable[[dict[str, int]], Awaitable[None]]
"""``on_expired(counts)``: deliveries a sweep turned dead as too old, per subscription."""


class Retention:
    """The periodic sweep; ``run()`` until ``stop()``."""

    def __init__(
        self,
        settings: RetentionSettings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        paused: Callable[[], Sequence[str]] = tuple,
        on_expired: Expired | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._paused = paused
        self._on_expired = on_expired
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # a stop or a reload ends the wait between sweeps
        self.sweeps = 0

    async def sweep(self) -> SweepResult:
        """One pass: expire stale pending deliveries, then purge what is finished."""
        now = self._clock()
        bounds = retention_bounds(self._settings, now)
        expired = await self._store.expire_older_than(
            received_before=bounds.received_before, now=now, paused=self._paused()
        )
        if expired and self._on_expired is not None:
            try:
                await self._on_expired(expired)
            except Exception:  # an alert must never stop retention
                log.exception("reporting expired deliveries failed")
        purged = await self._store.purge(
            delivered_before=bounds.delivered_before, dead_before=bounds.dead_before
        )
        purged += await self._store.purge_history(
            audit_before=now - self._settings.audit,
            retired_before=min(bounds.delivered_before, bounds.dead_before),
        )
        self.sweeps += 1
        if expired or purged:
            log.info("retention sweep", expired_too_old=expired, purged_rows=purged)
        return SweepResult(purged=purged, expired=expired)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sweep()
            except StoreError as exc:
                # The store may be briefly unavailable; the next sweep catches up.
                log.warning("retention sweep failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.interval)
            self._wake.clear()

    def reconfigure(self, settings: RetentionSettings) -> None:
        """Adopt reloaded settings; a sweep on the new bounds runs now."""
        self._settings = settings
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
