"""The presence tracker: the thin I/O around :mod:`bridge.presence`.

It owns three small jobs:

* on the ingest path, :meth:`PresenceTracker.observe` turns an accepted event
  into the :class:`~bridge.presence.Observation` the store decides on, and
  :meth:`PresenceTracker.annotate` gives a ``device.offline`` that names no
  reason (a Last Will) ``reason: connection_lost`` before it is routed;
* :meth:`PresenceTracker.announce` builds a synthetic transition's event
  (stable id, routed), for the store to insert inside its transaction;
* :meth:`PresenceTracker.run` is the timeout scanner: every quarter of the
  shortest timeout it knows (``offline_after`` and the announced ones it has
  seen; at least 50 ms) it asks the store to claim devices silent for longer
  than their timeout; the claim and the events it
  announces are one transaction, so with several instances only one emits.
  After the bridge starts it waits the longest timeout it knows first
  (``offline_after``, or a longer one announced, e.g. by the retained statuses
  the broker hands over): devices had no chance to be seen while the bridge
  was down, and a storm of false offlines would follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bridge.config import PresenceSettings
from bridge.core.events import Event, event_id_for, format_timestamp
from bridge.core.presence import CONNECTION_LOST, Observation, Presence, Transition, presence_of
from bridge.core.profiles.telemetry import TELEMETRY_TYPE
from bridge.core.route import Router
from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.store.base import Store
from bridge.store.rows import Accepted, IngestResult, PresencePolicy

__all__ = ["PresenceTracker"]

log = get_logger("hookbridge.presence")

_MIN_INTERVAL = 0.05
_CLAIM_LIMIT = 500
_MAX_CLAIMS_PER_SCAN = 100  # 50 000 devices a scan; the rest wait for the next one

HandOver = Callable[[IngestResult], Awaitable[None]]


class PresenceTracker:
    def __init__(
        self,
        settings: PresenceSettings,
        store: Store,
        router: Router,
        *,
        source: str,
        owner: str,
        lease: float,
        hand_over: HandOver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._router = router
        self._source = source.rstrip("/")
        self._owner = owner
        self._lease = lease
        self._hand_over = hand_over
        self._clock = clock
        self._stop = asyncio.Event()
        default = settings.offline_after if settings.timeout_for == "all" else None
        self.policy = PresencePolicy(default, self.announce, settings.announce_first_seen)
        self.timeouts = 0  # heartbeat timeouts this instance emitted
        # The shortest and longest timeouts seen: the scan pace and the start-up grace.
        self._shortest = self._longest = settings.offline_after

    def reroute(self, router: Router) -> None:
        """Adopt reloaded subscriptions: synthetic transitions go where the new config says."""
        self._router = router

    @property
    def interval(self) -> float:
        return max(_MIN_INTERVAL, self._shortest / 4)

    # -- the ingest path ---------------------------------------------------------------

    def observe(self, event: Event, *, at: float, retained: bool) -> Observation | None:
        """The sighting ``event`` stands for; None when it names no device, or is telemetry.

        A retained message that is not a presence event is old news: it says
        nothing about whether the device is there now, so it is not a sighting.
        """
        device = event.device_id
        if device is None or event.type == TELEMETRY_TYPE:
            return None  # telemetry says nothing about presence: a device may report it offline
        says = presence_of(event.type)
        if retained and says is None:
            return None
        reason = event.data.get("reason")
        heartbeat = self._announced(event.data.get("heartbeat_interval"))
        return Observation(
            device,
            at,
            says,
            reason if isinstance(reason, str) else None,
            retained=retained,
            heartbeat=heartbeat,
            account=event.account or "",
        )

    def _announced(self, interval: object) -> float | None:
        """The timeout a ``heartbeat_interval`` (seconds) announces; None for none or nonsense."""
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            return None
        if not 0 < interval < 1e9:
            return None
        timeout = float(interval) * self._settings.missed_heartbeats
        self._shortest = min(self._shortest, timeout)
        self._longest = max(self._longest, timeout)
        return timeout

    def annotate(self, event: Event) -> Event:
        """A ``device.offline`` without a reason is a dropped connection (a Last Will)."""
        if event.type != "device.offline" or event.data.get("reason") is not None:
            return event
        return Event(
            event.id,
            event.type,
            event.timestamp,
            event.source,
            {**event.data, "reason": CONNECTION_LOST},
            context=event.context,
            account=event.account,
        )

    def announce(self, transition: Transition) -> Accepted:
        """The routed event of a synthetic transition; the same id on every instance."""
        device = transition.device_id
        account = transition.account
        # A device id is an account's own: the same id in two accounts is two devices.
        origin = f"{self._source}#{account}" if account else self._source
        event = Event(
            id=event_id_for(origin, device, transition.key),
            type="device.online" if transition.state is Presence.ONLINE else "device.offline",
            timestamp=datetime.fromtimestamp(transition.changed_at, UTC),
            source=f"{self._source}/presence/{device}",
            data={
                "device_id": device,
                "reason": transition.reason,
                "last_seen": format_timestamp(datetime.fromtimestamp(transition.last_seen, UTC)),
            },
            account=account or None,
        )
        subscriptions = tuple(s.name for s in self._router.match(event))
        return Accepted(event, subscriptions, received_at=transition.changed_at)

    # -- the timeout scanner ------------------------------------------------------------

    async def run(self) -> None:
        started = self._clock()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            if self._clock() < started + self._longest:
                continue
            await self.scan()

    async def scan(self) -> int:
        """Claim and announce every device timed out by now; returns how many."""
        total = 0
        for _ in range(_MAX_CLAIMS_PER_SCAN):
            now = self._clock()
            try:
                result = await self._store.claim_presence_timeouts(
                    now=now,
                    policy=self.policy,
                    owner=self._owner,
                    lease_until=now + self._lease,
                    limit=_CLAIM_LIMIT,
                    owners=self._router.owners,
                )
            except StoreError as exc:
                log.warning("cannot scan for presence timeouts", error=str(exc))
                return total
            claimed = result.stored + result.duplicates
            total += claimed
            if result.stored:
                log.info("devices timed out", count=result.stored)
                self.timeouts += result.stored
                await self._hand_over(result)
            if claimed < _CLAIM_LIMIT:
                break
        return total

    def stop(self) -> None:
        self._stop.set()
