"""Attempts: how one attempt (of a delivery, or of a batch) runs and is settled.

An attempt runs as a task of its lane. When the sender has answered, the
retry schedule decides what the delivery becomes; the result is queued for
the recorder first, then the lane learns from it (:mod:`bridge.delivery.health`).
Whatever the consequences do, the attempt's result is written and its
delivery is retried or settled as decided. Deliveries whose result was queued
stay held in the lane's book until the recorder has committed it; the others
(too old but unrecorded, cancelled) are let go when the task ends.

The sending strategies (:mod:`bridge.delivery.strategy`,
:mod:`bridge.delivery.batching`) decide what an attempt carries; this module
is what they share.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from bridge.config import Settings, Subscription
from bridge.core.circuit import admit, release_probe
from bridge.core.retry import schedule_after
from bridge.delivery.health import Health, Settled
from bridge.delivery.lane import Lane
from bridge.delivery.recorder import Recorder
from bridge.delivery.retention import TOO_OLD_ERROR, too_old
from bridge.delivery.send import AttemptResult, Sender
from bridge.observe.logs import get_logger
from bridge.store.outbox import OutboxMessage
from bridge.store.rows import AttemptOutcome, AttemptRecord, Delivery, DeliveryStatus

__all__ = ["AfterDelivery", "Attempts"]

log = get_logger("hookbridge.dispatch")

AfterDelivery = Callable[
    [Subscription, Delivery, AttemptResult, AttemptOutcome],
    Awaitable[str | OutboxMessage | None],
]
"""Called after every attempt with what it decided (pipe mode: the answer, or the error,
to send back); returns an error to record, a message to commit to the outbox with the
attempt's record, or None."""


class Attempts:
    """Runs and settles attempts for the dispatcher's lanes (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sender: Sender,
        recorder: Recorder,
        health: Health,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        after_delivery: AfterDelivery | None = None,
    ) -> None:
        self.settings = settings  # replaced on reload
        self.sender = sender
        self._recorder = recorder
        self._health = health
        self.clock = clock
        self._rand = rand
        self._after_delivery = after_delivery
        self.group: asyncio.TaskGroup | None = None
        self.stopping = False

    # -- starting -----------------------------------------------------------------

    def may_start(self, lane: Lane) -> bool:
        return bool(
            lane.book.waiting
            and lane.concurrency.permits(lane.in_flight, self.clock())
            and not lane.paused
            and not self.stopping
        )

    async def admit(self, lane: Lane) -> bool | None:
        """Let the circuit and the rate limit admit one attempt: None when the circuit
        refuses; else whether it was open (the attempt is then its probe)."""
        was_open = lane.circuit.is_open
        lane.circuit, admitted = admit(lane.circuit, lane.circuit_policy, self.clock())
        if not admitted:
            return None
        if lane.limiter is not None:
            await lane.limiter.acquire()
        return was_open

    def unused(self, lane: Lane, was_open: bool) -> None:
        """An admitted attempt that will not start after all: its probe goes back."""
        if was_open:
            lane.circuit = release_probe(lane.circuit)

    def launch(
        self, lane: Lane, key: str, attempt: Coroutine[Any, Any, None], *, probe: bool
    ) -> None:
        """Run one attempt (of a delivery, or of a batch) as a task of the lane."""
        assert self.group is not None
        if probe:
            lane.probe = key
            log.info("circuit half-open: probing with one attempt", subscription=lane.name)
        lane.in_flight += 1
        lane.metrics.in_flight.set(lane.in_flight)
        task = self.group.create_task(attempt, name=f"attempt-{key}")
        lane.tasks.add(task)
        task.add_done_callback(lane.tasks.discard)

    def ended(self, lane: Lane, key: str, unrecorded: Iterable[str]) -> None:
        """An attempt task ends: its slot and, if it was the probe, the probe are freed.

        Deliveries whose result was recorded stay held until it is committed (see
        the recorder): a claim in between must not take them again; the others
        (too old, cancelled) are let go.
        """
        if lane.probe == key:
            lane.probe = None
            lane.circuit = release_probe(lane.circuit)
        lane.in_flight -= 1
        lane.book.settle(unrecorded)
        lane.metrics.in_flight.set(lane.in_flight)
        lane.wake.set()

    def failed(self, exc: Exception, started: float) -> AttemptResult:
        """An attempt that raised instead of giving a result: its failure."""
        latency_ms = max(0.0, self.clock() - started) * 1000
        return AttemptResult.failure(f"internal error: {type(exc).__name__}", latency_ms=latency_ms)

    # -- one delivery -------------------------------------------------------------

    async def single(self, lane: Lane, delivery: Delivery) -> None:
        """One attempt of one delivery (a task of its lane)."""
        sub = lane.subscription
        attempt_no = delivery.attempts + 1
        started = self.clock()
        recorded = False
        try:
            # Each attempt runs in a task of its own, with its own copy of the
            # context: binding without unbinding cannot leak into another attempt.
            structlog.contextvars.bind_contextvars(
                event_id=delivery.event_id, delivery_id=delivery.id, subscription=sub.name
            )
            if self.too_old(delivery, started):
                await self.record_too_old(lane, delivery, attempt_no, started)
                recorded = True
                return
            try:
                result = await self.sender.attempt(
                    sub, delivery.event, delivery_id=delivery.id, attempt=attempt_no
                )
            except Exception as exc:
                # The sender turns every problem into a result; should one still
                # escape, it is this attempt's failure, never the dispatcher's.
                log.exception("attempt raised; recorded as a failed attempt")
                result = self.failed(exc, started)
            await self.settle(lane, [delivery], started, result)
            recorded = True
        finally:
            self.ended(lane, delivery.id, () if recorded else (delivery.id,))

    def too_old(self, delivery: Delivery, now: float) -> bool:
        max_age = self.settings.retention.max_event_age
        return too_old(delivery.age_start, now=now, max_event_age=max_age)

    async def record_too_old(
        self, lane: Lane, delivery: Delivery, attempt_no: int, now: float
    ) -> None:
        # Not sent: held by the bridge for longer than max_event_age (retried that
        # long), a receiver acting on it now does more harm than good.
        record = AttemptRecord(
            delivery.id, attempt_no, now, 0.0, None, TOO_OLD_ERROR, None, delivery.lease_token
        )
        log.warning("delivery held longer than retention.max_event_age; dead without sending")
        self._health.dead_too_old(lane)
        self._recorder.add(record, AttemptOutcome(DeliveryStatus.DEAD, reason="too_old"))
        await self._health.emit(
            "delivery_dead",
            lane.name,
            {"delivery_id": delivery.id, "event_id": delivery.event_id, "reason": "too_old"},
        )

    # -- settling -----------------------------------------------------------------

    async def settle(
        self, lane: Lane, members: Sequence[Delivery], started: float, result: AttemptResult
    ) -> None:
        """Queue each member's record with one next state, then let the lane learn once.

        ``members`` are the deliveries one attempt carried (one, or a batch);
        the attempt's number is one more than the most any of them has had.
        """
        now = self.clock()
        outcome = self._decide(result, members, now)
        settled = [
            Settled(member, result, outcome, member.attempts + 1, started, now)
            for member in members
        ]
        for one in settled:
            await self._record(lane, one)
        try:
            await self._health.learn(lane, settled[0])
            for one in settled:
                await self._health.count(lane, one)
        except Exception:
            log.exception("settling an attempt's consequences failed; its result is kept")

    def _decide(
        self, result: AttemptResult, members: Sequence[Delivery], now: float
    ) -> AttemptOutcome:
        if result.outcome == "gone":
            # 410: the receiver says the endpoint is gone. Keep the delivery (due
            # again once someone re-enables the subscription) and stop sending.
            return AttemptOutcome(DeliveryStatus.PENDING, next_attempt_at=now)
        # A batch goes on from the furthest step of its members; it is early only
        # when every member was made due before its slot.
        return schedule_after(
            result,
            steps=max(m.retry_step for m in members),
            early=all(m.early for m in members),
            retry=self.settings.retry,
            now=now,
            rand=self._rand(),
        )

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
