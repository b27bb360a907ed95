"""A delivery lane: one subscription's buffer, limits, circuit and timers.

The dispatcher drives each lane in a task of its own; the lane knows how much
it may take from the store (:attr:`Lane.wants_more`) and how long it may sleep
(:meth:`Lane.idle_for`) before a timer it owns falls due. Everything else that
should wake it (an attempt ends, a delivery is offered, a result is recorded,
an operator acts) sets :attr:`Lane.wake`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from aiolimiter import AsyncLimiter

from bridge.admin.metrics import LaneMetrics
from bridge.config import Subscription
from bridge.core import concurrency
from bridge.core.circuit import Circuit, CircuitPolicy, record, reopens_at
from bridge.core.outcomes import AttemptResult
from bridge.store.rows import Delivery, SubscriptionState

__all__ = ["BLOCKED_POLL", "ERROR_PAUSE", "FALLBACK_POLL", "Lane"]

FALLBACK_POLL = 5.0
"""The slowest a lane looks at the store: deliveries of a killed instance whose lease ran out."""
BLOCKED_POLL = 0.25
"""Due but not claimable (an ordered device waits for its previous delivery): poll gently."""
ERROR_PAUSE = 1.0
"""After a failed step, or with a state the store refused to keep: try again this soon."""
_MIN_WAIT = 0.001
_DISABLED_AT = "disabled_at"  # subscription state: when the current pause began

CircuitChange = Literal["opened", "reopened", "closed"] | None


class Lane:
    """Delivery of one subscription: buffer, in-flight limit, rate limit, retries due."""

    def __init__(
        self, subscription: Subscription, state: SubscriptionState, metrics: LaneMetrics
    ) -> None:
        self.subscription = subscription
        self.metrics = metrics
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
        # Batching (bridge.delivery.batching): the stored batch of each buffered
        # delivery ("" for none), and until when a partial batch waits for more.
        self.batch_ids: dict[str, str] = {}
        self.gather_until: float | None = None

    @staticmethod
    def _limiter(subscription: Subscription) -> AsyncLimiter | None:
        rate = subscription.rate_limit
        return AsyncLimiter(rate.count, rate.per) if rate is not None else None

    @property
    def run_length(self) -> int:
        """How many of one device's deliveries a claim may take at once: an ordered
        batch takes a device's first ``max_events``; anything else one at a time."""
        batch = self.subscription.batch
        return batch.max_events if batch is not None and self.subscription.ordered else 1

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

    def idle_for(self, now: float) -> float:
        """How long the lane may sleep before it has something to do.

        Every reason to wake sooner sets ``self.wake`` (an attempt ends, a
        delivery is offered, a result is recorded, an operator acts), so the
        only timers here are the ones nothing else would signal: the next poll
        of the store, the end of a circuit's cool-down or of a Retry-After
        pause. A timer already past never makes a zero wait: that is a spin.
        """
        timeout = FALLBACK_POLL
        if self.unsaved:
            timeout = ERROR_PAUSE  # a state the store refused: try again soon
        if self.paused:
            return timeout
        if self.wants_more and self.poll_at > now:
            timeout = min(timeout, self.poll_at - now)
        if self.buffer:
            reopens = reopens_at(self.circuit, self.circuit_policy)
            if reopens is not None and reopens > now:
                # Open circuit: sleep until the probe may go, not a poll sooner.
                timeout = reopens - now
            if self.gather_until is not None and self.gather_until > now:
                timeout = min(timeout, self.gather_until - now)  # a partial batch is due
            paused_until = self.concurrency.paused_until
            if paused_until > now:
                # Retry-After: the receiver asked for a pause; wake when it ends.
                timeout = min(timeout, paused_until - now)
        return max(timeout, _MIN_WAIT)

    @property
    def takes_offers(self) -> bool:
        """Takes fresh deliveries in memory. An ordered lane takes only those that head
        their device's queue (the store says which, see bridge.store.heads), and none
        when it batches: its claims take a device's run of deliveries together."""
        return not self.paused and self.capacity > 0 and self.run_length == 1

    def take(
        self, claimed: Sequence[Delivery], *, room: int, next_due: float | None, now: float
    ) -> None:
        """Buffer what a claim returned and set when to ask the store again."""
        for delivery in claimed:
            if delivery.id not in self.held:
                self.buffer.append(delivery)
                self.held.add(delivery.id)
        if len(claimed) >= room:
            self.poll_at = now  # more are due: come back as soon as there is room
        elif next_due is not None and next_due <= now and not claimed:
            # Due but not claimable (an ordered device waits for its previous
            # one): a result being recorded wakes the lane; poll only gently.
            self.poll_at = now + BLOCKED_POLL
        elif next_due is not None:
            self.poll_at = min(max(next_due, now + 0.001), now + FALLBACK_POLL)
        else:
            self.poll_at = now + FALLBACK_POLL

    def paused_for(self, now: float) -> float | None:
        """How long the current pause (disabled in the store) has lasted; None if none."""
        since = self.state.extra.get(_DISABLED_AT)
        if not self.state.disabled or since is None:
            return None
        try:
            return max(0.0, now - float(since))
        except ValueError:
            return None

    def set_disabled(self, disabled: bool, reason: str | None, now: float) -> None:
        """Disable or enable in memory; a pause remembers when it began."""
        extra = {k: v for k, v in self.state.extra.items() if k != _DISABLED_AT}
        if disabled:
            began = self.state.extra.get(_DISABLED_AT) if self.state.disabled else None
            extra[_DISABLED_AT] = began or repr(now)
        self.state = replace(
            self.state,
            disabled=disabled,
            disabled_reason=reason if disabled else None,
            failing_since=self.state.failing_since if disabled else None,
            extra=extra,
        )

    def note_success(self, now: float) -> bool:
        """An answer: the failing streak ends. True when the state must be saved."""
        had_failures = self.state.failing_since is not None
        self.state = replace(self.state, last_success=now, failing_since=None)
        return had_failures

    def note_failure(self, now: float) -> tuple[bool, float]:
        """A failure: whether it starts a failing streak, and how long the streak is."""
        first = self.state.failing_since is None
        since = self.state.failing_since or now
        self.state = replace(self.state, last_failure=now, failing_since=since)
        return first, now - since

    def adapt(self, result: AttemptResult, now: float) -> bool:
        """Let the in-flight limit learn from one answer; True when the limit changed."""
        before = self.concurrency.allowed
        signal = _limit_signal(result)
        if signal is None:
            self.concurrency = concurrency.after_success(
                self.concurrency,
                self.limit_policy,
                latency=result.latency_ms / 1000,
                in_flight=self.in_flight,
                now=now,
            )
        else:
            self.concurrency = concurrency.after_failure(
                self.concurrency,
                self.limit_policy,
                kind=signal,
                now=now,
                retry_after=result.retry_after,
            )
        return self.concurrency.allowed != before

    def record_circuit(self, *, success: bool, now: float) -> CircuitChange:
        """Feed one result to the circuit breaker; what changed.

        ``opened``: a closed circuit opened (an outage begins); ``reopened``: a
        failed probe opened it again; ``closed``: the endpoint answers again.
        """
        before = self.circuit
        self.circuit = record(before, self.circuit_policy, success=success, now=now)
        if self.circuit.is_open and self.circuit.opened_at != before.opened_at:
            self.concurrency = concurrency.circuit_opened(self.concurrency, self.limit_policy)
            return "reopened" if before.is_open else "opened"
        if before.is_open and not self.circuit.is_open:
            return "closed"
        return None


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
