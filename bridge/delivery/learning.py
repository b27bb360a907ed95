"""What a lane learns from each attempt's result: its concurrency limit, its circuit,
its failing streak and disabled state, alerts and metrics.

:class:`Learning` is the part of the dispatcher that turns one result into those
consequences; the dispatcher (:mod:`bridge.delivery.dispatch`) records the
result first, so whatever a consequence does (a store that refuses the
disabled state, an alert that fails), the attempt itself is kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.admin.metrics import Metrics
from bridge.config import Settings, Subscription
from bridge.delivery.lane import Lane
from bridge.delivery.send import AttemptResult
from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.base import Store
from bridge.store.outbox import OutboxMessage
from bridge.store.rows import AttemptOutcome, Delivery, DeliveryStatus

__all__ = ["AfterDelivery", "Alert", "Learning", "Settled"]

log = get_logger("hookbridge.dispatch")

Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]
"""``alert(kind, subscription, details)``: operational events such as a disabled subscription."""

AfterDelivery = Callable[
    [Subscription, Delivery, AttemptResult, AttemptOutcome],
    Awaitable[str | OutboxMessage | None],
]
"""Called after every attempt with what it decided (pipe mode: the answer, or the error,
to send back); returns an error to record, a message to commit to the outbox with the
attempt's record, or None."""


@dataclass(frozen=True, slots=True)
class Settled:
    """One delivery's attempt and what was decided about it."""

    delivery: Delivery
    result: AttemptResult
    outcome: AttemptOutcome
    attempt_no: int
    started: float
    now: float  # when the outcome was decided


class Learning(ABC):
    """A lane's consequences of one attempt (the dispatcher's half that learns)."""

    _settings: Settings
    _store: Store
    _metrics: Metrics
    _alert: Alert | None

    @abstractmethod
    async def set_disabled(self, name: str, disabled: bool, reason: str | None) -> bool:
        """Disable or enable a subscription; False if there is none by that name."""

    async def _disable(self, lane: Lane, reason: str, code: str) -> None:
        """The dispatcher's own decision to stop a lane; a store error is not fatal here."""
        try:
            await self.set_disabled(lane.name, True, reason)
        except StoreError as exc:
            log.warning("cannot save the disabled state yet; will retry", error=str(exc))
        await self._emit("subscription_disabled", lane.name, {"reason": code})

    async def _learn(self, lane: Lane, settled: Settled) -> None:
        """What one attempt's result changes for the lane: its concurrency limit, the
        410 that disables it, its circuit, its failing streak, its next poll."""
        result, outcome, now = settled.result, settled.outcome, settled.now
        lane.metrics.attempt_latency.observe(result.latency_ms / 1000)
        if lane.adapt(result, now):
            self._metrics.concurrency_limit.labels(lane.name).set(lane.concurrency.allowed)
        if result.outcome == "gone":
            log.warning("endpoint answered 410 Gone; disabling subscription")
            await self._disable(lane, "endpoint answered 410 Gone", "gone")
        delivered = outcome.status is DeliveryStatus.DELIVERED
        await self._note_circuit(lane, delivered, now)
        if delivered:
            log.debug(
                "delivered", status=result.status_code, latency_ms=round(result.latency_ms, 1)
            )
            await self._note_success(lane, now)
            return
        log.info(
            "attempt failed",
            attempt=settled.attempt_no,
            status=result.status_code,
            error=result.error,
            outcome=outcome.status.value,
        )
        await self._note_failure(lane, now)
        if outcome.status is DeliveryStatus.PENDING and outcome.next_attempt_at is not None:
            due = outcome.next_attempt_at
            lane.poll_at = min(lane.poll_at, due) if lane.poll_at > now else due

    async def _count(self, lane: Lane, settled: Settled) -> None:
        """What one delivery's result counts: its outcome, latency and freshness when
        delivered, its death (with its alert) when dead."""
        delivery, outcome, now = settled.delivery, settled.outcome, settled.now
        lane.metrics.attempt(settled.result.outcome).inc()
        if outcome.status is DeliveryStatus.DELIVERED:
            # Both from receipt (the commit that stored it): device clocks are not trusted.
            since_receipt = max(0.0, now - delivery.created_at)
            lane.metrics.end_to_end_latency.observe(since_receipt)
            lane.metrics.freshness.observe(since_receipt)
        elif outcome.status is DeliveryStatus.DEAD:
            self._metrics.dead.labels(lane.name).inc()
            details = {"delivery_id": delivery.id, "event_id": delivery.event_id}
            await self._emit(
                "delivery_dead", lane.name, {**details, "reason": outcome.reason or ""}
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
