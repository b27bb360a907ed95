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
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bridge.admin.metrics import Metrics
from bridge.config import Settings, Subscription
from bridge.core.circuit import admit, release_probe
from bridge.core.retry import decide
from bridge.delivery.lane import ERROR_PAUSE, Lane
from bridge.delivery.recorder import Recorder
from bridge.delivery.retention import TOO_OLD_ERROR, too_old
from bridge.delivery.send import AttemptResult, Sender
from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.base import Store
from bridge.store.rows import (
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    SubscriptionState,
)

__all__ = ["AfterDelivery", "Alert", "Dispatcher", "Lane"]

log = get_logger("hookbridge.dispatch")

Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]
"""``alert(kind, subscription, details)``: operational events such as a disabled subscription."""

AfterDelivery = Callable[
    [Subscription, Delivery, AttemptResult, AttemptOutcome], Awaitable[str | None]
]
"""Called after every attempt with what it decided (pipe mode: publish the answer, or the
error, back); returns an error to record, or None."""


class Dispatcher:
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
        self._recorder = Recorder(store, settled=self._settled, clock=clock)
        self._stopping = False
        self._group: asyncio.TaskGroup | None = None

    # -- public -------------------------------------------------------------------

    async def run(self) -> None:
        states = await self._store.subscription_states()
        for sub in self._settings.subscriptions:
            self.lanes[sub.name] = Lane(
                sub,
                states.get(sub.name, SubscriptionState(sub.name)),
                self._metrics.for_lane(sub.name),
            )
            self._metrics.subscription_disabled.labels(sub.name).set(
                1 if self.lanes[sub.name].paused else 0
            )
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._recorder.run(), name="attempt-recorder")
            for lane in self.lanes.values():
                group.create_task(self._drive(lane), name=f"lane-{lane.name}")

    def offer(self, deliveries: Sequence[Delivery]) -> list[str]:
        """Take freshly committed deliveries; returns the ids it could not take now.

        The caller releases those in the store, where the lane's next poll finds them.
        """
        overflow: list[str] = []
        for delivery in deliveries:
            lane = self.lanes.get(delivery.subscription)
            if lane is None or self._stopping or not lane.takes_offers:
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

    async def _disable(self, lane: Lane, reason: str, code: str) -> None:
        """The dispatcher's own decision to stop a lane; a store error is not fatal here."""
        try:
            await self.set_disabled(lane.name, True, reason)
        except StoreError as exc:
            log.warning("cannot save the disabled state yet; will retry", error=str(exc))
        await self._emit("subscription_disabled", lane.name, {"reason": code})

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
            )
            next_due = await self._store.next_due_at(lane.name, ordered=lane.subscription.ordered)
        except StoreError as exc:
            log.warning("cannot claim due deliveries", subscription=lane.name, error=str(exc))
            lane.poll_at = now + 1.0
            return
        lane.take(claimed, room=room, next_due=next_due, now=now)

    async def _start_attempts(self, lane: Lane) -> None:
        assert self._group is not None
        while (
            lane.buffer
            and lane.concurrency.permits(lane.in_flight, self._clock())
            and not lane.paused
            and not self._stopping
        ):
            was_open = lane.circuit.is_open
            lane.circuit, admitted = admit(lane.circuit, lane.circuit_policy, self._clock())
            if not admitted:
                break  # open: deliveries wait in the buffer and the store, none dropped
            if lane.limiter is not None:
                await lane.limiter.acquire()
            delivery = lane.buffer.popleft()
            if was_open:
                lane.probe = delivery.id
                log.info("circuit half-open: probing with one delivery", subscription=lane.name)
            lane.in_flight += 1
            lane.metrics.in_flight.set(lane.in_flight)
            task = self._group.create_task(
                self._attempt(lane, delivery), name=f"attempt-{delivery.id}"
            )
            lane.tasks.add(task)
            task.add_done_callback(lane.tasks.discard)

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
                reason = f"internal error: {type(exc).__name__}"
                latency_ms = max(0.0, self._clock() - started) * 1000
                result = AttemptResult.failure(reason, latency_ms=latency_ms)
            recorded = await self._settle(lane, delivery, attempt_no, started, result)
        finally:
            if lane.probe == delivery.id:
                # A probe that ended without a result (too old, cancelled) frees the slot.
                lane.probe = None
                lane.circuit = release_probe(lane.circuit)
            lane.in_flight -= 1
            if not recorded:
                # A recorded one stays held until its result is committed (see _recorder):
                # a claim in between must not take it again.
                lane.held.discard(delivery.id)
            lane.metrics.in_flight.set(lane.in_flight)
            lane.wake.set()

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
        outcome = decide(
            result, attempts_made=attempt_no, retry=self._settings.retry, now=now, rand=self._rand()
        )
        error = result.error
        if result.outcome == "gone":
            # 410: the receiver says the endpoint is gone. Keep the delivery (due
            # again once someone re-enables the subscription) and stop sending.
            outcome = AttemptOutcome(DeliveryStatus.PENDING, next_attempt_at=now)
        if self._after_delivery is not None:
            try:
                note = await self._after_delivery(lane.subscription, delivery, result, outcome)
            except Exception as exc:
                log.exception("after-delivery hook failed")
                note = f"after-delivery hook failed: {type(exc).__name__}"
            if outcome.status is DeliveryStatus.DELIVERED:
                error = note
            elif note:
                error = f"{error}; {note}" if error else note
        record = AttemptRecord(
            delivery_id=delivery.id,
            attempt=attempt_no,
            started_at=started,
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            error=error,
            response_excerpt=result.response_excerpt,
            lease_token=delivery.lease_token,
        )
        self._recorder.add(record, outcome)
        try:
            await self._learn(lane, delivery, result, outcome, attempt_no=attempt_no, now=now)
        except Exception:
            log.exception("settling an attempt's consequences failed; its result is kept")
        return True

    async def _learn(
        self,
        lane: Lane,
        delivery: Delivery,
        result: AttemptResult,
        outcome: AttemptOutcome,
        *,
        attempt_no: int,
        now: float,
    ) -> None:
        """What one result changes for the lane: limits, circuit, state, alerts, metrics."""
        name = lane.name
        lane.metrics.attempt_latency.observe(result.latency_ms / 1000)
        if lane.adapt(result, now):
            self._metrics.concurrency_limit.labels(name).set(lane.concurrency.allowed)
        if result.outcome == "gone":
            log.warning("endpoint answered 410 Gone; disabling subscription")
            await self._disable(lane, "endpoint answered 410 Gone", "gone")
        lane.metrics.attempt(result.outcome).inc()
        await self._note_circuit(lane, outcome.status is DeliveryStatus.DELIVERED, now)
        if outcome.status is DeliveryStatus.DELIVERED:
            received = delivery.created_at
            lane.metrics.end_to_end_latency.observe(max(0.0, now - received))
            log.debug(
                "delivered", status=result.status_code, latency_ms=round(result.latency_ms, 1)
            )
            await self._note_success(lane, now)
            return
        log.info(
            "attempt failed",
            attempt=attempt_no,
            status=result.status_code,
            error=result.error,
            outcome=outcome.status.value,
        )
        await self._note_failure(lane, now)
        if outcome.status is DeliveryStatus.DEAD:
            self._metrics.dead.labels(name).inc()
            await self._emit(
                "delivery_dead",
                name,
                {
                    "delivery_id": delivery.id,
                    "event_id": delivery.event_id,
                    "reason": outcome.reason or "",
                },
            )
        elif outcome.next_attempt_at is not None:
            lane.poll_at = (
                min(lane.poll_at, outcome.next_attempt_at)
                if lane.poll_at > now
                else outcome.next_attempt_at
            )

    async def _note_success(self, lane: Lane, now: float) -> None:
        if lane.note_success(now):
            await self._save_state(lane)

    async def _note_failure(self, lane: Lane, now: float) -> None:
        first, failing_for = lane.note_failure(now)
        if failing_for > self._settings.retry.disable_after and not lane.state.disabled:
            log.warning(
                "subscription failing too long; disabling", failing_for_s=round(failing_for)
            )
            await self._disable(lane, "failing longer than retry.disable_after", "disable_after")
        elif first:
            await self._save_state(lane)

    async def _note_circuit(self, lane: Lane, success: bool, now: float) -> None:
        change = lane.record_circuit(success=success, now=now)
        lane.metrics.circuit_open.set(1 if lane.circuit.is_open else 0)
        if change == "closed":
            log.info("circuit closed: endpoint answers again", subscription=lane.name)
        if change not in {"opened", "reopened"}:
            return
        cool_down = lane.circuit_policy.cool_down
        failures = lane.circuit.consecutive_failures
        log.warning(
            "circuit open: pausing deliveries",
            subscription=lane.name,
            consecutive_failures=failures,
            cool_down_s=cool_down,
        )
        if change == "opened":  # one alert per outage, not one per failed probe
            details = {"reason": "failures", "failures": failures, "cool_down_s": cool_down}
            await self._emit("circuit_opened", lane.name, dict(details))

    async def _save_state(self, lane: Lane) -> None:
        lane.unsaved = True
        try:
            await self._store.save_subscription_state(lane.state)
        except StoreError as exc:
            log.warning("cannot save subscription state; will retry", error=str(exc))
        else:
            lane.unsaved = False

    async def _emit(self, kind: str, subscription: str, details: dict[str, object]) -> None:
        if self._alert is not None:
            try:
                await self._alert(kind, subscription, details)
            except Exception:  # an alert must never break delivery
                log.exception("alert failed", kind=kind)
