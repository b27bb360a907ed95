"""The outbox publisher: accepted inbound messages and pipe replies go to the broker
until it takes them.

Every accepted inbound webhook is a row of the store's outbox (see
:mod:`bridge.store.outbox`) before its 202 goes out. This task claims due
rows under a lease, publishes each with QoS 1 (MQTT 5 correlation data: an
inbound message's stable id, a reply's the device's own; the same on every
attempt) and records the outcome. Pipe replies (:mod:`bridge.delivery.pipe`)
are rows of the same outbox, committed with the attempt they answer, and
follow the same rules:

- a PUBACK with a reason code below 0x80 marks the message ``published``;
- a refusal (reason code 0x80 or more, e.g. an ACL's "not authorized"), a
  timeout or a lost connection is a failed attempt: the message is due again
  after a backoff (:data:`BACKOFF`), never later than its ``max_age``;
- a message past its ``max_age`` is never published: it becomes ``dead``
  (reason ``too_old``), counted and alerted.

While the broker is down nothing is attempted (no attempt is wasted on a
known outage), but messages still age out. At most one message per topic is
in flight (the store's claim hands out each topic's head of line only), so a
topic's messages reach the broker in acceptance order.

Delivery to the broker is at least once: when the store fails after the
PUBACK, the message is published again once its lease lapses, with the same
correlation data, so a subscriber can recognise the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

from bridge.config import RetentionSettings
from bridge.core.messages import Outgoing, Publish
from bridge.errors import BridgeError, StoreError
from bridge.observe.inbound import InboundMetrics
from bridge.observe.logs import get_logger
from bridge.store.outbox import OutboxKind, OutboxMessage, OutboxOutcome, OutboxStore

__all__ = ["BACKOFF", "OutboxPublisher", "retry_at"]

log = get_logger("hookbridge.inbound")

BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds before the next attempt after the 1st, 2nd, … failure (the last repeats)."""
CLAIM_LIMIT = 32
IDLE_POLL = 5.0
"""The longest idle wait: a dead instance's claims and late expiries are found this often."""
OFFLINE_POLL = 1.0
STATS_INTERVAL = 5.0

Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]


def _what(message: OutboxMessage) -> str:
    return "pipe reply" if message.kind is OutboxKind.REPLY else "inbound message"


def _about(message: OutboxMessage) -> dict[str, str]:
    """The log fields that say which message a line is about."""
    return {"source": message.source, "id": message.id, "topic": message.topic}


def retry_at(message: OutboxMessage, failures: int, now: float) -> float | None:
    """When to try again after ``failures`` failed attempts; None when no time is left."""
    if now >= message.expires_at:
        return None
    delay = BACKOFF[min(max(failures, 1), len(BACKOFF)) - 1]
    return min(now + delay, message.expires_at)


class OutboxPublisher:
    """Publishes the outbox of one bridge instance (``owner``) until stopped."""

    def __init__(
        self,
        store: OutboxStore,
        publish: Publish,
        *,
        connected: Callable[[], bool],
        owner: str,
        lease: float,
        metrics: InboundMetrics,
        alert: Alert,
        retention: RetentionSettings,
    ) -> None:
        self._store = store
        self._publish = publish
        self._connected = connected
        self._owner = owner
        self._lease = lease
        self._metrics = metrics
        self._alert = alert
        self._retention = retention
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stats_at = 0.0
        self._purged_at = time.monotonic()

    def accepted(self, message: OutboxMessage) -> None:
        """A message was committed: count it and publish it now."""
        self._metrics.accepted.labels(message.source).inc()
        self._wake.set()

    def poke(self) -> None:
        """Something became due (an operator's replay): look now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        # Leases still in our name are left from a run that was killed.
        with contextlib.suppress(StoreError):
            await self._store.release_outbox(owner=self._owner)
        failing = False
        while not self._stopping.is_set():
            self._wake.clear()
            busy = False
            try:
                busy = await self._round()
                await self._housekeeping()
            except StoreError as exc:
                if not failing:
                    log.warning("outbox: the store is unavailable; will retry", error=str(exc))
                failing = True
            else:
                failing = False
            if not busy:
                await self._idle(failing)

    async def _round(self) -> bool:
        """Expire, claim, publish and record once; True when there may be more to do now."""
        now = time.time()
        limit = CLAIM_LIMIT if self._connected() else 0
        claim = await self._store.claim_outbox(
            now=now, owner=self._owner, lease_until=now + self._lease, limit=limit
        )
        await self._died(claim.expired, "too_old")
        if not claim.messages:
            return bool(claim.expired)
        outcomes = await asyncio.gather(*(self._attempt(m) for m in claim.messages))
        await self._store.record_outbox(outcomes, now=time.time())
        by_id = {m.id: m for m in claim.messages}
        dead = [by_id[o.id] for o in outcomes if not o.published and o.retry_at is None]
        await self._died(dead, "too_old")
        return any(o.published for o in outcomes)

    async def _attempt(self, message: OutboxMessage) -> OutboxOutcome:
        """One publish; its failure is a result, never an exception."""
        what = _what(message)
        try:
            await self._publish(
                Outgoing(
                    message.topic,
                    message.payload,
                    qos=1,
                    correlation=message.publish_correlation,
                    content_type=message.content_type,
                )
            )
        except BridgeError as exc:
            self._metrics.failed_of(message.kind).labels(message.source).inc()
            log.warning(f"{what} not published; will retry", **_about(message), error=str(exc))
            return OutboxOutcome(
                message.id,
                message.lease_token,
                published=False,
                error=str(exc),
                retry_at=retry_at(message, message.attempts + 1, time.time()),
            )
        self._metrics.published_of(message.kind).labels(message.source).inc()
        log.info(f"{what} published", source=message.source, id=message.id)
        return OutboxOutcome(message.id, message.lease_token, published=True)

    async def _died(self, messages: Sequence[OutboxMessage], reason: str) -> None:
        for message in messages:
            self._metrics.dead_of(message.kind).labels(message.source).inc()
            log.error(f"{_what(message)} dead: not published within max_age", **_about(message))
            reply = message.kind is OutboxKind.REPLY
            await self._alert(
                "pipe_reply_dead" if reply else "inbound_dead",
                message.source,
                {
                    "reason": reason,
                    "id": message.id,
                    "topic": message.topic,
                    "delivery_id": message.delivery_id,
                },
            )

    async def _housekeeping(self) -> None:
        clock = time.monotonic()
        if clock - self._stats_at >= STATS_INTERVAL:
            self._stats_at = clock
            stats = await self._store.outbox_stats()
            self._metrics.pending.set(stats.counts.get("pending", 0))
            age = 0.0 if stats.oldest_pending is None else time.time() - stats.oldest_pending
            self._metrics.oldest_pending_age.set(max(0.0, age))
        if clock - self._purged_at >= self._retention.interval:
            self._purged_at = clock
            now = time.time()
            await self._store.purge_outbox(
                published_before=now - self._retention.delivered,
                dead_before=now - self._retention.dead,
            )

    async def _idle(self, failing: bool) -> None:
        timeout = IDLE_POLL
        if failing or not self._connected():
            timeout = OFFLINE_POLL
        else:
            with contextlib.suppress(StoreError):
                due = await self._store.next_outbox_due()
                if due is not None:
                    # Floored: a due message that cannot be claimed yet must not spin.
                    timeout = min(IDLE_POLL, max(0.05, due - time.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
