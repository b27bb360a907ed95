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
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog
from aiolimiter import AsyncLimiter

from bridge.admin.metrics import Metrics
from bridge.config import Settings, Subscription
from bridge.core import concurrency
from bridge.core.circuit import Circuit, CircuitPolicy, admit, record, release_probe, reopens_at
from bridge.core.retry import decide
from bridge.delivery.retention import TOO_OLD_ERROR, too_old
from bridge.delivery.send import AttemptResult, Sender
from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.base import (
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    Store,
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

_FALLBACK_POLL = 5.0
_BLOCKED_POLL = 0.25
_LANE_ERROR_PAUSE = 1.0
_MIN_WAIT = 0.001
_DISABLED_AT = "disabled_at"  # subscription state: when the current pause began
_RECORD_BATCH = 512
_RECORD_INTERVAL = 0.005


class Lane:
    """Delivery of one subscription: buffer, in-flight limit, rate limit, retries due."""

    def __init__(self, subscription: Subscription, state: SubscriptionState) -> None:
        self.subscription = subscription
        self.state = state
        self.buffer: deque[Delivery] = deque()
        self.held: set[str] = set()
        self.in_flight = 0
        self.wake = asyncio.Event()
        self.poll_at = 0.0  # when to ask the store for due deliveries next
        self.limiter = self._limiter(subscription)
        self.closed = False
        self.circuit = Circuit()
        self.concurrency = concurrency.start(self.limit_policy)
        self.probe: str | None = None  # the delivery a half-open circuit let through
        self.tasks: set[asyncio.Task[None]] = set()
        self.unsaved = False  # its state changed but the store refused to keep it

    @staticmethod
    def _limiter(subscription: Subscription) -> AsyncLimiter | None:
        rate = subscription.rate_limit
        return AsyncLimiter(rate.count, rate.per) if rate is not None else None

    @property
    def name(self) -> str:
        return self.subscription.name

    @property
    def capacity(self) -> int:
        """How many more deliveries the buffer may take."""
        return max(0, 4 * self.subscription.max_in_flight + 256 - len(self.held))

    @property
    def wants_more(self) -> bool:
        """Worth a claim: the buffer ran dry, or has room for a good batch.

        Refilling by batches keeps a lane draining at a slow receiver's pace
        from asking the store once per finished attempt.
        """
        room = self.capacity
        return room > 0 and (not self.buffer or room >= min(self.subscription.max_in_flight, 64))

    @property
    def circuit_policy(self) -> CircuitPolicy:
        c = self.subscription.circuit
        return CircuitPolicy(failures=c.failures, cool_down=c.cool_down, enabled=c.enabled)

    @property
    def limit_policy(self) -> concurrency.LimitPolicy:
        return concurrency.LimitPolicy(cap=self.subscription.max_in_flight)

    @property
    def paused(self) -> bool:
        return self.state.disabled or not self.subscription.enabled

    def update(self, subscription: Subscription) -> None:
        if subscription.rate_limit != self.subscription.rate_limit:
            self.limiter = self._limiter(subscription)
        resized = subscription.max_in_flight != self.subscription.max_in_flight
        self.subscription = subscription
        if resized:
            self.concurrency = concurrency.start(self.limit_policy)
        self.wake.set()


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
        self._records: list[tuple[AttemptRecord, AttemptOutcome]] = []
        self._record_wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None

    # -- public -------------------------------------------------------------------

    async def run(self) -> None:
        states = await self._store.subscription_states()
        for sub in self._settings.subscriptions:
            self.lanes[sub.name] = Lane(sub, states.get(sub.name, SubscriptionState(sub.name)))
            self._metrics.subscription_disabled.labels(sub.name).set(
                1 if self.lanes[sub.name].paused else 0
            )
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._recorder(), name="attempt-recorder")
            for lane in self.lanes.values():
                group.create_task(self._drive(lane), name=f"lane-{lane.name}")

    def offer(self, deliveries: Sequence[Delivery]) -> list[str]:
        """Take freshly committed deliveries; returns the ids it could not take now.

        The caller releases those in the store, where the lane's next poll finds them.
        """
        overflow: list[str] = []
        for delivery in deliveries:
            lane = self.lanes.get(delivery.subscription)
            # An ordered lane takes deliveries only through the store's claim, which
            # holds a device's next one back until the previous is settled.
            if (
                lane is None
                or lane.paused
                or lane.capacity <= 0
                or self._stopping
                or lane.subscription.ordered
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
        extra = dict(lane.state.extra)
        paused_since = _float_or_none(extra.pop(_DISABLED_AT, None))
        if disabled:
            # The queue's clock stops while disabled (see Store.resume_age).
            extra[_DISABLED_AT] = repr(paused_since if paused_since is not None else now)
        elif paused_since is not None and lane.state.disabled:
            await self._store.resume_age(name, paused_for=max(0.0, now - paused_since))
        lane.state = replace(
            lane.state,
            disabled=disabled,
            disabled_reason=reason if disabled else None,
            failing_since=lane.state.failing_since if disabled else None,
            extra=extra,
        )
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
                lane = Lane(sub, states.get(name, SubscriptionState(name)))
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
        self._stopped.set()
        self._record_wake.set()

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
                timeout = self._idle_for(lane)
            except Exception:
                # A lane that stops would strand its subscription's queue: log, wait, go on.
                log.exception("delivery lane step failed; trying again", subscription=lane.name)
                timeout = _LANE_ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout)
        if lane.closed:  # removed by a reload: what it holds goes back to the store
            await self._release_buffer(lane)

    def _idle_for(self, lane: Lane) -> float:
        """How long the lane may sleep before it has something to do.

        Every reason to wake sooner sets ``lane.wake`` (an attempt ends, a
        delivery is offered, a result is recorded, an operator acts), so the
        only timers here are the ones nothing else would signal: the next poll
        of the store, the end of a circuit's cool-down or of a Retry-After
        pause. A timer already past never makes a zero wait: that is a spin.
        """
        now = self._clock()
        timeout = _FALLBACK_POLL
        if lane.unsaved:
            timeout = _LANE_ERROR_PAUSE  # a state the store refused: try again soon
        if lane.paused:
            return timeout
        if lane.wants_more and lane.poll_at > now:
            timeout = min(timeout, lane.poll_at - now)
        if lane.buffer:
            reopens = reopens_at(lane.circuit, lane.circuit_policy)
            if reopens is not None and reopens > now:
                # Open circuit: sleep until the probe may go, not a poll sooner.
                timeout = reopens - now
            paused_until = lane.concurrency.paused_until
            if paused_until > now:
                # Retry-After: the receiver asked for a pause; wake when it ends.
                timeout = min(timeout, paused_until - now)
        return max(timeout, _MIN_WAIT)

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
        for delivery in claimed:
            if delivery.id not in lane.held:
                lane.buffer.append(delivery)
                lane.held.add(delivery.id)
        if len(claimed) >= room:
            lane.poll_at = now  # more are due: come back as soon as there is room
        elif next_due is not None and next_due <= now and not claimed:
            # Due but not claimable (an ordered device waits for its previous
            # one): a result being recorded wakes the lane; poll only gently.
            lane.poll_at = now + _BLOCKED_POLL
        elif next_due is not None:
            lane.poll_at = min(max(next_due, now + 0.001), now + _FALLBACK_POLL)
        else:
            lane.poll_at = now + _FALLBACK_POLL

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
            self._metrics.in_flight.labels(lane.name).set(lane.in_flight)
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
            with structlog.contextvars.bound_contextvars(
                event_id=delivery.event_id, delivery_id=delivery.id, subscription=sub.name
            ):
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
                    result = _failed(reason, started, self._clock())
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
            self._metrics.in_flight.labels(lane.name).set(lane.in_flight)
            lane.wake.set()

    async def _record_too_old(
        self, lane: Lane, delivery: Delivery, attempt_no: int, now: float
    ) -> None:
        # Not sent: held by the bridge for longer than max_event_age (retried that
        # long), a receiver acting on it now does more harm than good.
        record = AttemptRecord(
            delivery_id=delivery.id,
            attempt=attempt_no,
            started_at=now,
            latency_ms=0.0,
            status_code=None,
            error=TOO_OLD_ERROR,
            response_excerpt=None,
            lease_token=delivery.lease_token,
        )
        log.warning("delivery held longer than retention.max_event_age; dead without sending")
        self._metrics.dead.labels(lane.name).inc()
        self._metrics.too_old.labels(lane.name).inc()
        self._records.append((record, AttemptOutcome(DeliveryStatus.DEAD, reason="too_old")))
        self._record_wake.set()
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
        self._records.append((record, outcome))
        self._record_wake.set()
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
        self._metrics.attempt_latency.labels(name).observe(result.latency_ms / 1000)
        self._adapt(lane, result, now)
        if result.outcome == "gone":
            log.warning("endpoint answered 410 Gone; disabling subscription")
            await self._disable(lane, "endpoint answered 410 Gone", "gone")
        self._metrics.deliveries.labels(name, result.outcome).inc()
        await self._note_circuit(lane, outcome.status is DeliveryStatus.DELIVERED, now)
        if outcome.status is DeliveryStatus.DELIVERED:
            received = delivery.created_at
            self._metrics.end_to_end_latency.labels(name).observe(max(0.0, now - received))
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

    def _adapt(self, lane: Lane, result: AttemptResult, now: float) -> None:
        """Let the lane's concurrency limit learn from one answer."""
        policy = lane.limit_policy
        before = lane.concurrency.allowed
        signal = _limit_signal(result)
        if signal is None:
            lane.concurrency = concurrency.after_success(
                lane.concurrency,
                policy,
                latency=result.latency_ms / 1000,
                in_flight=lane.in_flight,
                now=now,
            )
        else:
            lane.concurrency = concurrency.after_failure(
                lane.concurrency, policy, kind=signal, now=now, retry_after=result.retry_after
            )
        if lane.concurrency.allowed != before:
            self._metrics.concurrency_limit.labels(lane.name).set(lane.concurrency.allowed)

    async def _note_success(self, lane: Lane, now: float) -> None:
        had_failures = lane.state.failing_since is not None
        lane.state = replace(lane.state, last_success=now, failing_since=None)
        if had_failures:
            await self._save_state(lane)

    async def _note_failure(self, lane: Lane, now: float) -> None:
        first = lane.state.failing_since is None
        lane.state = replace(
            lane.state, last_failure=now, failing_since=lane.state.failing_since or now
        )
        failing_for = now - (lane.state.failing_since or now)
        if failing_for > self._settings.retry.disable_after and not lane.state.disabled:
            log.warning(
                "subscription failing too long; disabling", failing_for_s=round(failing_for)
            )
            await self._disable(lane, "failing longer than retry.disable_after", "disable_after")
        elif first:
            await self._save_state(lane)

    async def _note_circuit(self, lane: Lane, success: bool, now: float) -> None:
        before = lane.circuit
        lane.circuit = record(before, lane.circuit_policy, success=success, now=now)
        self._metrics.circuit_open.labels(lane.name).set(1 if lane.circuit.is_open else 0)
        if lane.circuit.is_open and lane.circuit.opened_at != before.opened_at:
            lane.concurrency = concurrency.circuit_opened(lane.concurrency, lane.limit_policy)
            cool_down = lane.circuit_policy.cool_down
            log.warning(
                "circuit open: pausing deliveries",
                subscription=lane.name,
                consecutive_failures=lane.circuit.consecutive_failures,
                cool_down_s=cool_down,
            )
            if not before.is_open:  # one alert per outage, not one per failed probe
                await self._emit(
                    "circuit_opened",
                    lane.name,
                    {
                        "reason": "failures",
                        "failures": lane.circuit.consecutive_failures,
                        "cool_down_s": cool_down,
                    },
                )
        elif before.is_open and not lane.circuit.is_open:
            log.info("circuit closed: endpoint answers again", subscription=lane.name)

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

    # -- recorder -----------------------------------------------------------------

    async def _recorder(self) -> None:
        while True:
            try:
                if await self._record_round():
                    return
            except Exception:
                # Results not written are retried with their deliveries: never stop recording.
                log.exception("recording attempt results failed; going on")
                await asyncio.sleep(_LANE_ERROR_PAUSE)

    async def _record_round(self) -> bool:
        """Write one batch of results; True once stopped with nothing left."""
        await self._record_wake.wait()
        if not self._stopped.is_set() and len(self._records) < _RECORD_BATCH:
            # Let a burst of results gather: one commit for many attempts.
            await asyncio.sleep(_RECORD_INTERVAL)
        self._record_wake.clear()
        # At most one batch per commit: what a kill can lose unrecorded (and
        # so send again) stays bounded; the rest goes in the next round at once.
        batch = self._records[:_RECORD_BATCH]
        del self._records[:_RECORD_BATCH]
        if self._records:
            self._record_wake.set()
        if batch:
            await self._write_records(batch)
            settled = {record.delivery_id for record, _ in batch}
            for lane in self.lanes.values():
                lane.held.difference_update(settled)
            # A settled delivery unblocks its device's next one in ordered lanes.
            for lane in self.lanes.values():
                if lane.subscription.ordered:
                    lane.poll_at = 0.0
                    lane.wake.set()
        return self._stopped.is_set() and not self._records

    async def _write_records(self, batch: list[tuple[AttemptRecord, AttemptOutcome]]) -> None:
        delay = 0.1
        for _ in range(100):
            try:
                await self._store.record_attempts(batch, now=self._clock())
            except StoreError as exc:
                log.error("cannot record attempts; will retry", error=str(exc), count=len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                return
        # The leases run out and the deliveries are tried again: at-least-once holds.
        log.error(
            "gave up recording attempts; their deliveries will be sent again", count=len(batch)
        )


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _failed(error: str, started: float, now: float) -> AttemptResult:
    return AttemptResult(
        outcome="failed",
        status_code=None,
        latency_ms=max(0.0, now - started) * 1000,
        error=error,
        response_excerpt=None,
        response_body=None,
        retry_after=None,
        content_type=None,
    )


def _limit_signal(result: AttemptResult) -> concurrency.Failure | None:
    """What an attempt tells the concurrency limiter; None: the receiver answered."""
    status = result.status_code
    if status in (429, 503):
        return "throttled"
    if status is not None and status < 500:
        return None  # 2xx, and 4xx the receiver chose to give: it is keeping up
    if status is None and (result.error or "").startswith("timeout"):
        return "timeout"
    return "error"
