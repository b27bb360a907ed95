"""The broker's losses made visible: its count of dropped messages, watched.

A broker drops messages the bridge never sees: when a client's queue is full
(mosquitto's ``max_queued_messages``, 1000 by default, while the bridge is
restarting or down), or its in-flight window is. The bridge cannot count
what never reached it, but mosquitto counts it in
``$SYS/broker/publish/messages/dropped``, published every ``sys_interval``
seconds (retained, so a new subscriber gets the current value at once).

With ``mqtt.watch_broker_drops`` (the default) ingest subscribes to that
topic on every connection, directly (never through ``$share/``: each
instance reads the broker's own value), and hands each value here. The last
value seen is kept in the store per broker, so drops that happened while the
bridge was down show at its return; one transaction compares and keeps it,
so of several instances seeing the same growth one reports it. Growth is
reported as a ``bridge.broker_dropped`` alert and counted in
``hookbridge_broker_dropped_messages_total``. A value below the kept one means
the broker restarted (its counters start at zero): everything it counts now
was dropped since.

What the counter cannot tell: it is broker-wide (every client's drops, not
only the bridge's; the alert says so), it says nothing of which messages or
topics, and a broker that does not publish it (or refuses ``$SYS`` to the
bridge) leaves the watch silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.observe.metrics import Metrics
from bridge.store.base import Store

__all__ = ["DROPPED_TOPIC", "BrokerDrops", "new_drops"]

log = get_logger("hookbridge.ingest")

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
_COUNTER = "publish/messages/dropped"
_SCOPE = "broker-wide: every client's dropped messages, not only this bridge's"

Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]


def new_drops(previous: int | None, value: int) -> tuple[int, bool]:
    """How many drops ``value`` adds to the ``previous`` one kept, and whether the broker
    restarted (its counter went down, so it counts from zero since). The first value
    ever seen is a starting point, not news: when those drops happened is unknown."""
    if previous is None:
        return 0, False
    if value < previous:
        return value, True
    return value - previous, False


def parse_counter(payload: bytes) -> int | None:
    """A counter's value, or None for anything else (the watch stays silent on it)."""
    text = payload.strip()
    if not text.isdigit() or len(text) > 20:
        return None
    return int(text)


class BrokerDrops:
    """The watch of one broker's dropped-messages counter (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        broker: str,
        metrics: Metrics,
        alert: Alert,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._broker = broker
        self._metrics = metrics
        self._alert = alert
        self._clock = clock
        self._latest: int | None = None
        self._seen = asyncio.Event()
        self._stopping = False
        self.checked = 0  # values compared with the kept one

    def seen(self, payload: bytes) -> None:
        """A value arrived (on the loop, from ingest); only the latest is kept to check."""
        value = parse_counter(payload)
        if value is not None:
            self._latest = value
            self._seen.set()

    def stop(self) -> None:
        self._stopping = True
        self._seen.set()

    async def run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen.wait(), 60.0)
            self._seen.clear()
            value, self._latest = self._latest, None
            if value is not None and not self._stopping:
                try:
                    await self.check(value)
                except StoreError as exc:  # the next value checks again
                    log.warning("cannot keep the broker's drop counter", error=str(exc))

    async def check(self, value: int) -> int:
        """Keep ``value`` and report what it adds; returns the drops reported."""
        previous = await self._store.note_broker_counter(
            self._broker, _COUNTER, value, now=self._clock()
        )
        self.checked += 1
        dropped, restarted = new_drops(previous, value)
        if dropped <= 0:
            return 0
        self._metrics.broker_dropped.inc(dropped)
        reason = "broker_restarted" if restarted else "dropped"
        log.warning(
            "the broker dropped messages (its own count, broker-wide)",
            broker=self._broker,
            dropped=dropped,
            total=value,
            reason=reason,
        )
        details: dict[str, object] = {
            "reason": reason,
            "dropped": dropped,
            "total": value,
            "broker": self._broker,
            "counter": DROPPED_TOPIC,
            "scope": _SCOPE,
        }
        try:
            await self._alert("broker_dropped", "", details)
        except Exception:  # the count is kept and the metric counted: an alert never breaks ingest
            log.exception("alert failed", kind="broker_dropped")
        return dropped
