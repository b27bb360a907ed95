"""What a lane learns from each attempt's result, put into effect.

:func:`bridge.core.health.judge` decides (the concurrency limit, the circuit,
the failing streak, whether the subscription must stop); :class:`Health`
carries the decision out: metrics, log lines, the saved subscription state,
alerts, and disabling the subscription. The dispatcher records each result
before it lets the lane learn from it, so whatever an effect does (a store
that refuses the disabled state, an alert that fails) the attempt is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.core.health import Verdict, judge
from bridge.delivery.lane import Lane
from bridge.delivery.send import AttemptResult
from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.observe.metrics import Metrics
from bridge.store.base import Store
from bridge.store.rows import AttemptOutcome, Delivery, DeliveryStatus

__all__ = ["Alert", "Disable", "Health", "Settled"]

log = get_logger("hookbridge.dispatch")

Alert = Callable[[str, str, dict[str, object]], Awaitable[None]]
"""``alert(kind, subscription, details)``: operational events such as a disabled subscription."""

Disable = Callable[[str, bool, str | None], Awaitable[bool]]
"""``disable(name, disabled, reason)``: the dispatcher's switch of a subscription."""


@dataclass(frozen=True, slots=True)
class Settled:
    """One delivery's attempt and what was decided about it."""

    delivery: Delivery
    result: AttemptResult
    outcome: AttemptOutcome
    attempt_no: int
    started: float
    now: float  # when the outcome was decided


class Health:
    """Turns judged results into effects (see the module docstring)."""

    def __init__(
        self, *, store: Store, metrics: Metrics, alert: Alert | None, disable: Disable
    ) -> None:
        self._store = store
        self._metrics = metrics
        self.alert = alert
        self._set_disabled = disable

    async def learn(self, lane: Lane, settled: Settled) -> None:
        """What one attempt's result changes for the lane: its concurrency limit, the
        410 that disables it, its circuit, its failing streak, its next poll."""
        result, outcome, now = settled.result, settled.outcome, settled.now
        lane.metrics.attempt_latency.observe(result.latency_ms / 1000)
        delivered = outcome.status is DeliveryStatus.DELIVERED
        verdict = judge(
            lane.standing,
            lane.health_policy,
            result=result,
            delivered=delivered,
            in_flight=lane.in_flight,
            now=now,
        )
        lane.adopt(verdict, delivered=delivered, now=now)
        if verdict.limit_changed:
            self._metrics.concurrency_limit.labels(lane.name).set(lane.concurrency.allowed)
        if verdict.disable == "gone":
            log.warning("endpoint answered 410 Gone; disabling subscription")
            await self.disable(lane, "endpoint answered 410 Gone", "gone")
        await self._circuit_effects(lane, verdict)
        if delivered:
            log.debug(
                "delivered", status=result.status_code, latency_ms=round(result.latency_ms, 1)
            )
        else:
            log.warning(
                "attempt failed",
                attempt=settled.attempt_no,
                status=result.status_code,
                error=result.error,
                outcome=outcome.status.value,
            )
        if verdict.disable == "disable_after" and not lane.state.disabled:
            log.warning(
                "subscription failing too long; disabling",
                failing_for_s=round(verdict.failing_for),
            )
            await self.disable(lane, "failing longer than retry.disable_after", "disable_after")
        elif verdict.streak == "ended":
            await self.end_streak(lane, now)
        elif verdict.streak is not None and verdict.disable is None:
            await self.save_state(lane)
        if outcome.status is DeliveryStatus.PENDING and outcome.next_attempt_at is not None:
            due = outcome.next_attempt_at
            lane.poll_at = min(lane.poll_at, due) if lane.poll_at > now else due

    async def count(self, lane: Lane, settled: Settled) -> None:
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
            await self.emit("delivery_dead", lane.name, {**details, "reason": outcome.reason or ""})

    def dead_too_old(self, lane: Lane) -> None:
        """A delivery goes dead unsent, held longer than ``retention.max_event_age``."""
        self._metrics.dead.labels(lane.name).inc()
        self._metrics.too_old.labels(lane.name).inc()

    async def disable(self, lane: Lane, reason: str, code: str) -> None:
        """The dispatcher's own decision to stop a lane; a store error is not fatal here."""
        try:
            await self._set_disabled(lane.name, True, reason)
        except StoreError as exc:
            log.warning("cannot save the disabled state yet; will retry", error=str(exc))
        await self.emit("subscription_disabled", lane.name, {"reason": code})

    async def end_streak(self, lane: Lane, now: float) -> None:
        """The lane's failing streak ended: so does the stored one, shared by every
        instance. Of the instances ending it, the one whose call finds it set starts
        the catch-up (see bridge.store.catchup); one write per outage, none per success."""
        lane.ending_streak = now
        lane.unsaved = True
        try:
            await self.streak_end_saved(lane)
        except StoreError as exc:
            log.warning("cannot save subscription state; will retry", error=str(exc))
        else:
            lane.unsaved = False

    async def streak_end_saved(self, lane: Lane) -> None:
        """Give the store the streak's end the lane holds, if any (raises StoreError)."""
        if lane.ending_streak is None:
            return
        if await self._store.end_streak(lane.name, now=lane.ending_streak):
            log.info("endpoint answers again: catching up", subscription=lane.name)
            lane.start_catch_up()
        lane.ending_streak = None

    async def save_state(self, lane: Lane) -> None:
        lane.unsaved = True
        try:
            await self.streak_end_saved(lane)  # first: the full state says the streak is over
            await self._store.save_subscription_state(lane.state)
        except StoreError as exc:
            log.warning("cannot save subscription state; will retry", error=str(exc))
        else:
            lane.unsaved = False

    async def emit(self, kind: str, subscription: str, details: dict[str, object]) -> None:
        if self.alert is not None:
            try:
                await self.alert(kind, subscription, details)
            except Exception:  # an alert must never break delivery
                log.exception("alert failed", kind=kind)

    async def _circuit_effects(self, lane: Lane, verdict: Verdict) -> None:
        change = verdict.circuit
        lane.metrics.circuit_open.set(1 if lane.circuit.is_open else 0)
        if change == "closed":
            log.info("circuit closed: endpoint answers again", subscription=lane.name)
        if change not in {"opened", "reopened"}:
            return
        lane.wake.set()  # holding back now: what waits goes back to the store
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
            await self.emit("circuit_opened", lane.name, dict(details))
