"""The dispatcher: from stored deliveries to HTTP attempts, one lane per subscription.

Each subscription has a :class:`Lane` with its own buffer, its own in-flight
limit and rate limit, so a slow or dead endpoint never delays another. The
in-flight limit adapts to the receiver (:mod:`bridge.concurrency`, with
``max_in_flight`` as its cap). New deliveries are handed over in memory right after their
commit (already leased to us in the store); the store is asked for due
deliveries only when a retry falls due, when something was released or
requeued, and on a slow fallback poll (deliveries of a killed instance whose
lease ran out). Attempt results are written back in batches by one recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from bridge.admin.metrics import Metrics
from bridge.config import Settings
from bridge.core.circuit import admit, release_probe
from bridge.core.retry import decide
from bridge.delivery.lane import ERROR_PAUSE, Lane
from bridge.delivery.learning import AfterDelivery, Alert, Learning, Settled
from bridge.delivery.recorder import Recorder
from bridge.delivery.retention import TOO_OLD_ERROR, too_old
from bridge.delivery.send import AttemptResult, Sender
from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.base import Store
from bridge.store.outbox import OutboxMessage
from bridge.store.rows import (
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    SubscriptionState,
)

__all__ = ["AfterDelivery", "Alert", "Dispatcher", "Lane"]

log = get_logger("hookbridge.dispatch")


class Dispatcher(Learning):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        sender: Sender,
        *,
        owner: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        alert: Alert | None = None,
        after_delivery: AfterDelivery | None = None,
        replies_committed: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sender = sender
        self._owner = owner
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._alert = alert
        self._after_delivery = after_delivery
        self.lanes: dict[str, Lane] = {}
        self._prepared = False
        self._recorder = Recorder(
            store, settled=self._settled, clock=clock, replies_committed=replies_committed
        )
        self._stopping = False
        self._group: asyncio.TaskGroup | None = None

    # -- public -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Build the lanes from the stored subscription states. Done before ingest starts,
        so the first deliveries it hands over find their lanes."""
        states = await self._store.subscription_states()
        self._prepared = True
        for sub in self._settings.subscriptions:
            self.lanes[sub.name] = Lane(
                sub,
                states.get(sub.name, SubscriptionState(sub.name)),
                self._metrics.for_lane(sub.name),
            )
            self._metrics.subscription_disabled.labels(sub.name).set(
                1 if self.lanes[sub.name].paused else 0
            )

    async def run(self) -> None:
        if not self._prepared:
            await self.prepare()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._recorder.run(), name="attempt-recorder")
            for lane in self.lanes.values():
                group.create_task(self._drive(lane), name=f"lane-{lane.name}")

    def offer(
        self, deliveries: Sequence[Delivery], heads: Collection[str] = frozenset()
    ) -> list[str]:
        """Take freshly committed deliveries; returns the ids it could not take now.

        An ordered lane takes only ``heads``: deliveries the store found first in
        their device's queue. The caller releases the rest in the store, where the
        lane's next poll finds them.
        """
        overflow: list[str] = []
        for delivery in deliveries:
            lane = self.lanes.get(delivery.subscription)
            if (
                lane is None
                or self._stopping
                or not lane.takes_offers
                or (lane.subscription.ordered and delivery.id not in heads)
            ):
                overflow.append(delivery.id)
                if lane is not None:
                    lane.poll_at = 0.0
                continue
            lane.buffer.append(delivery)
            lane.held.add(delivery.id)
            lane.wake.set()
        return overflow

    def paused(self) -> list[str]:
        """The subscriptions whose queue does not age now (disabled, or not enabled)."""
        return [lane.name for lane in self.lanes.values() if lane.paused]

    def poke(self, subscription: str | None = None) -> None:
        """Something changed in the store (requeue, replay, release): look now."""
        for lane in self.lanes.values():
            if subscription is None or lane.name == subscription:
                lane.poll_at = 0.0
                lane.wake.set()

    async def set_disabled(self, name: str, disabled: bool, reason: str | None) -> bool:
        lane = self.lanes.get(name)
        if lane is None:
            return False
        now = self._clock()
        paused_for = lane.paused_for(now)
        if not disabled and paused_for is not None:
            # The queue's clock stopped while disabled (see Store.resume_age).
            await self._store.resume_age(name, paused_for=paused_for)
        lane.set_disabled(disabled, reason, now)
        self._metrics.subscription_disabled.labels(name).set(1 if disabled else 0)
        if disabled:
            await self._release_buffer(lane)
        self.poke(name)
        # In force in memory first; a store that refuses to keep it raises to the
        # caller, and the lane keeps trying to save it (see _drive).
        lane.unsaved = True
        await self._store.save_subscription_state(lane.state)
        lane.unsaved = False
        return True

    async def reconfigure(self, settings: Settings) -> None:
        """Adopt a reloaded configuration: lanes are added, updated or retired.

        A retired lane starts nothing new and hands its buffer back to the store;
        attempts already in flight finish and are recorded as usual.
        """
        self._settings = settings
        wanted = {s.name: s for s in settings.subscriptions}
        for name in [n for n in self.lanes if n not in wanted]:
            retired = self.lanes.pop(name)
            retired.closed = True
            retired.wake.set()
        states = await self._store.subscription_states()
        for name, sub in wanted.items():
            found = self.lanes.get(name)
            if found is None:
                lane = Lane(
                    sub, states.get(name, SubscriptionState(name)), self._metrics.for_lane(name)
                )
                self.lanes[name] = lane
                if self._group is not None and not self._stopping:
                    self._group.create_task(self._drive(lane), name=f"lane-{name}")
            else:
                lane = found
                lane.update(sub)
            if lane.paused:
                await self._release_buffer(lane)
            self._metrics.subscription_disabled.labels(name).set(1 if lane.paused else 0)

    async def stop(self, grace: float) -> None:
        """Stop starting attempts; let those in flight finish within ``grace``; release the rest."""
        self._stopping = True
        for lane in self.lanes.values():
            lane.wake.set()
        deadline = self._clock() + grace
        tasks = [t for lane in self.lanes.values() for t in lane.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - self._clock()))
        for task in tasks:
            task.cancel()
        for lane in self.lanes.values():
            await self._release_buffer(lane)
        self._recorder.finish()

    def _settled(self, ids: set[str]) -> None:
        """Results committed: their deliveries leave the lanes' books, which frees room."""
        for lane in self.lanes.values():
            before = len(lane.held)
            lane.held.difference_update(ids)
            if lane.subscription.ordered:
                # A settled delivery unblocks its device's next one.
                lane.poll_at = 0.0
                lane.wake.set()
            elif len(lane.held) < before:
                lane.wake.set()  # room to claim what waits in the store

    # -- lanes ---------------------------------------------------------------------

    async def _drive(self, lane: Lane) -> None:
        while not self._stopping and not lane.closed:
            lane.wake.clear()
            try:
                if not lane.paused:
                    if self._clock() >= lane.poll_at and lane.wants_more:
                        await self._claim(lane, self._clock())
                    await self._start_attempts(lane)
                if lane.unsaved:
                    await self._save_state(lane)
                timeout = lane.idle_for(self._clock())
            except Exception:
                # A lane that stops would strand its subscription's queue: log, wait, go on.
                log.exception("delivery lane step failed; trying again", subscription=lane.name)
                timeout = ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout)
        if lane.closed:  # removed by a reload: what it holds goes back to the store
            await self._release_buffer(lane)

    async def _claim(self, lane: Lane, now: float) -> None:
        room = lane.capacity
        try:
            claimed = await self._store.claim_due(
                lane.name,
                now=now,
                owner=self._owner,
                lease_until=now + self._settings.store.lease,
                limit=room,
                ordered=lane.subscription.ordered,
                per_device=lane.run_length,
            )
            next_due = await self._store.next_due_at(lane.name, ordered=lane.subscription.ordered)
        except StoreError as exc:
            log.warning("cannot claim due deliveries", subscription=lane.name, error=str(exc))
            lane.poll_at = now + 1.0
            return
        lane.take(claimed, room=room, next_due=next_due, now=now)

    async def _start_attempts(self, lane: Lane) -> None:
        while self._may_start(lane):
            was_open = await self._admit(lane)
            if was_open is None:
                break  # open: deliveries wait in the buffer and the store, none dropped
            delivery = lane.buffer.popleft()
            self._launch(lane, delivery.id, self._attempt(lane, delivery), probe=was_open)

    def _may_start(self, lane: Lane) -> bool:
        return bool(
            lane.buffer
            and lane.concurrency.permits(lane.in_flight, self._clock())
            and not lane.paused
            and not self._stopping
        )

    async def _admit(self, lane: Lane) -> bool | None:
        """Let the circuit and the rate limit admit one attempt: None when the circuit
        refuses; else whether it was open (the attempt is then its probe)."""
        was_open = lane.circuit.is_open
        lane.circuit, admitted = admit(lane.circuit, lane.circuit_policy, self._clock())
        if not admitted:
            return None
        if lane.limiter is not None:
            await lane.limiter.acquire()
        return was_open

    def _launch(
        self, lane: Lane, key: str, attempt: Coroutine[Any, Any, None], *, probe: bool
    ) -> None:
        """Run one attempt (of a delivery, or of a batch) as a task of the lane."""
        assert self._group is not None
        if probe:
            lane.probe = key
            log.info("circuit half-open: probing with one attempt", subscription=lane.name)
        lane.in_flight += 1
        lane.metrics.in_flight.set(lane.in_flight)
        task = self._group.create_task(attempt, name=f"attempt-{key}")
        lane.tasks.add(task)
        task.add_done_callback(lane.tasks.discard)

    def _ended(self, lane: Lane, key: str, unrecorded: Iterable[str]) -> None:
        """An attempt task ends: its slot and, if it was the probe, the probe are freed.

        Deliveries whose result was recorded stay held until it is committed (see
        the recorder): a claim in between must not take them again; the others
        (too old, cancelled) are let go.
        """
        if lane.probe == key:
            lane.probe = None
            lane.circuit = release_probe(lane.circuit)
        lane.in_flight -= 1
        lane.held.difference_update(unrecorded)
        lane.metrics.in_flight.set(lane.in_flight)
        lane.wake.set()

    def _failed(self, exc: Exception, started: float) -> AttemptResult:
        """An attempt that raised instead of giving a result: its failure."""
        latency_ms = max(0.0, self._clock() - started) * 1000
        return AttemptResult.failure(f"internal error: {type(exc).__name__}", latency_ms=latency_ms)

    async def _release_buffer(self, lane: Lane) -> None:
        ids = [d.id for d in lane.buffer]
        lane.buffer.clear()
        lane.held.difference_update(ids)
        if ids:
            with contextlib.suppress(StoreError):
                await self._store.release(ids)

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(self, lane: Lane, delivery: Delivery) -> None:
        sub = lane.subscription
        attempt_no = delivery.attempts + 1
        started = self._clock()
        recorded = False
        try:
            # Each attempt runs in a task of its own, with its own copy of the
            # context: binding without unbinding cannot leak into another attempt.
            structlog.contextvars.bind_contextvars(
                event_id=delivery.event_id, delivery_id=delivery.id, subscription=sub.name
            )
            max_age = self._settings.retention.max_event_age
            if too_old(delivery.age_start, now=started, max_event_age=max_age):
                await self._record_too_old(lane, delivery, attempt_no, started)
                recorded = True
                return
            try:
                result = await self._sender.attempt(
                    sub, delivery.event, delivery_id=delivery.id, attempt=attempt_no
                )
            except Exception as exc:
                # The sender turns every problem into a result; should one still
                # escape, it is this attempt's failure, never the dispatcher's.
                log.exception("attempt raised; recorded as a failed attempt")
                result = self._failed(exc, started)
            recorded = await self._settle(lane, delivery, attempt_no, started, result)
        finally:
            self._ended(lane, delivery.id, () if recorded else (delivery.id,))

    async def _record_too_old(
        self, lane: Lane, delivery: Delivery, attempt_no: int, now: float
    ) -> None:
        # Not sent: held by the bridge for longer than max_event_age (retried that
        # long), a receiver acting on it now does more harm than good.
        record = AttemptRecord(
            delivery.id, attempt_no, now, 0.0, None, TOO_OLD_ERROR, None, delivery.lease_token
        )
        log.warning("delivery held longer than retention.max_event_age; dead without sending")
        self._metrics.dead.labels(lane.name).inc()
        self._metrics.too_old.labels(lane.name).inc()
        self._recorder.add(record, AttemptOutcome(DeliveryStatus.DEAD, reason="too_old"))
        await self._emit(
            "delivery_dead",
            lane.name,
            {"delivery_id": delivery.id, "event_id": delivery.event_id, "reason": "too_old"},
        )

    async def _settle(
        self,
        lane: Lane,
        delivery: Delivery,
        attempt_no: int,
        started: float,
        result: AttemptResult,
    ) -> bool:
        """Queue the attempt's record, then let the lane learn from it; True once queued.

        The record is queued first: whatever the consequences do (a store that
        refuses the disabled state, an alert that fails), the attempt's result is
        written and its delivery is retried or settled as decided.
        """
        now = self._clock()
        outcome = self._decide(result, attempt_no, now)
        settled = Settled(delivery, result, outcome, attempt_no, started, now)
        await self._record(lane, settled)
        try:
            await self._learn(lane, settled)
            await self._count(lane, settled)
        except Exception:
            log.exception("settling an attempt's consequences failed; its result is kept")
        return True

    def _decide(self, result: AttemptResult, attempt_no: int, now: float) -> AttemptOutcome:
        if result.outcome == "gone":
            # 410: the receiver says the endpoint is gone. Keep the delivery (due
            # again once someone re-enables the subscription) and stop sending.
            return AttemptOutcome(DeliveryStatus.PENDING, next_attempt_at=now)
        retry = self._settings.retry
        return decide(result, attempts_made=attempt_no, retry=retry, now=now, rand=self._rand())

    async def _record(self, lane: Lane, settled: Settled) -> None:
        """Queue one delivery's attempt record, with what the after-delivery hook notes."""
        delivery, result, outcome = settled.delivery, settled.result, settled.outcome
        error = result.error
        reply: OutboxMessage | None = None
        if self._after_delivery is not None:
            try:
                note = await self._after_delivery(lane.subscription, delivery, result, outcome)
            except Exception as exc:
                log.exception("after-delivery hook failed")
                note = f"after-delivery hook failed: {type(exc).__name__}"
            if isinstance(note, OutboxMessage):  # committed with the record, not an error
                reply, note = note, None
            if outcome.status is DeliveryStatus.DELIVERED:
                error = note
            elif note:
                error = f"{error}; {note}" if error else note
        record = AttemptRecord(
            delivery_id=delivery.id,
            attempt=settled.attempt_no,
            started_at=settled.started,
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            error=error,
            response_excerpt=result.response_excerpt,
            lease_token=delivery.lease_token,
            reply=reply,
        )
        self._recorder.add(record, outcome)
