"""A delivery lane: one subscription's lease book, limits, circuit and timers.

The dispatcher drives each lane in a task of its own; the lane knows how much
it may take from the store (:attr:`Lane.wants_more`, :attr:`Lane.claim_room`)
and how long it may sleep (:meth:`Lane.idle_for`) before a timer it owns falls
due. Everything else that should wake it (an attempt ends, a delivery is
offered, a result is recorded, an operator acts) sets :attr:`Lane.wake`.

While its receiver is known not to take deliveries (the circuit is open, or
a Retry-After pause holds) a lane is *holding back*: it takes nothing, and
what it holds waiting goes back to the store, where another instance whose
path to the receiver works may send it (see :attr:`Lane.holding_back`).

When the receiver answers again, the lane *catches up*: chunk by chunk, the
store makes due what waited for a retry slot after an endpoint-wide failure
(see :mod:`bridge.store.catchup`); the lane's claims send it. The stored
failing streak is shared by every instance: a lane refreshes what it knows of
it from the store every few seconds (:meth:`Lane.refresh`), so the instance
that sees the first success ends it, whichever saw the failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from aiolimiter import AsyncLimiter

from bridge.config import Settings, Subscription
from bridge.core import concurrency
from bridge.core.circuit import Circuit, CircuitPolicy, CircuitState, reopens_at
from bridge.core.health import HealthPolicy, Standing, Verdict
from bridge.delivery.book import LeaseBook
from bridge.observe.metrics import LaneMetrics
from bridge.store.rows import Delivery, SubscriptionState

__all__ = ["BLOCKED_POLL", "ERROR_PAUSE", "FALLBACK_POLL", "STATE_REFRESH", "Lane"]

FALLBACK_POLL = 5.0
"""The slowest a lane looks at the store: deliveries of a killed instance whose lease ran out."""
BLOCKED_POLL = 0.25
"""Due but not claimable (an ordered device waits for its previous delivery): poll gently."""
ERROR_PAUSE = 1.0
"""After a failed step, or with a state the store refused to keep: try again this soon."""
STATE_REFRESH = 5.0
"""How often the lanes read the stored subscription states (other instances' streaks)."""
_MIN_WAIT = 0.001
_DISABLED_AT = "disabled_at"  # subscription state: when the current pause began


class Lane:
    """Delivery of one subscription: lease book, in-flight limit, rate limit, retries due."""

    def __init__(
        self,
        subscription: Subscription,
        state: SubscriptionState,
        metrics: LaneMetrics,
        *,
        disable_after: float,
    ) -> None:
        self.subscription = subscription
        self.metrics = metrics
        self.state = state
        self.book = LeaseBook(batching=subscription.batch is not None)
        self.in_flight = 0
        self.wake = asyncio.Event()
        self.poll_at = 0.0  # when to ask the store for due deliveries next
        self.limiter = self._limiter(subscription)
        self.closed = False
        self.circuit = Circuit()
        self.concurrency = concurrency.start(self.limit_policy)
        self.disable_after = disable_after
        self.probe: str | None = None  # the delivery a half-open circuit let through
        self.tasks: set[asyncio.Task[None]] = set()
        self.unsaved = False  # its state changed but the store refused to keep it
        # Batching (bridge.delivery.batching): until when a partial batch waits for more.
        self.gather_until: float | None = None
        # Catching up (bridge.store.catchup): a chunk is due; where the last one ended.
        self.catching_up = False
        self.catch_up_at = 0.0  # the next chunk not before (a store that refused it)
        self.catch_up_cursor: tuple[float, str] | None = None
        self.caught_up = 0  # deliveries this catch-up made due so far
        self.ending_streak: float | None = None  # a streak's end the store has not taken

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
        """How many more deliveries the lane may hold."""
        return max(0, 4 * self.subscription.max_in_flight + 256 - self.book.held)

    @property
    def claim_room(self) -> int:
        """How many deliveries the next claim may take: one for the probe of an open
        circuit whose cool-down is over (the rest would only go back), else the capacity."""
        if self.circuit.state is CircuitState.OPEN:
            return min(1, self.capacity)
        return self.capacity

    @property
    def wants_more(self) -> bool:
        """Worth a claim: the buffer ran dry, or has room for a good batch.

        Refilling by batches keeps a lane draining at a slow receiver's pace
        from asking the store once per finished attempt.
        """
        room = self.capacity
        waiting = self.book.waiting
        return room > 0 and (not waiting or room >= min(self.subscription.max_in_flight, 64))

    def holding_back(self, now: float) -> bool:
        """The receiver is known not to take deliveries now: the circuit is open and
        its cool-down runs, its probe is out, or a Retry-After pause holds."""
        circuit = self.circuit
        if circuit.state is CircuitState.HALF_OPEN and circuit.probing:
            return True
        reopens = reopens_at(circuit, self.circuit_policy)
        if reopens is not None and now < reopens:
            return True
        return now < self.concurrency.paused_until

    @property
    def circuit_policy(self) -> CircuitPolicy:
        c = self.subscription.circuit
        return CircuitPolicy(failures=c.failures, cool_down=c.cool_down, enabled=c.enabled)

    @property
    def limit_policy(self) -> concurrency.LimitPolicy:
        return concurrency.LimitPolicy(cap=self.subscription.max_in_flight)

    @property
    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(self.circuit_policy, self.limit_policy, self.disable_after)

    @property
    def paused(self) -> bool:
        return self.state.disabled or not self.subscription.enabled

    def update(self, subscription: Subscription, settings: Settings) -> None:
        if subscription.rate_limit != self.subscription.rate_limit:
            self.limiter = self._limiter(subscription)
        resized = subscription.max_in_flight != self.subscription.max_in_flight
        self.subscription = subscription
        self.disable_after = settings.retry.disable_after
        if resized:
            self.concurrency = concurrency.start(self.limit_policy)
        self.wake.set()

    def idle_for(self, now: float) -> float:
        """How long the lane may sleep before it has something to do.

        Every reason to wake sooner sets ``self.wake`` (an attempt ends, a
        delivery is offered, a result is recorded, an operator acts), so the
        only timers here are the ones nothing else would signal: the next poll
        of the store, the end of a circuit's cool-down or of a Retry-After
        pause, a partial batch that is due. A timer already past never makes a
        zero wait: that is a spin.
        """
        timeout = FALLBACK_POLL
        if self.unsaved:
            timeout = ERROR_PAUSE  # a state the store refused: try again soon
        if self.paused:
            return timeout
        if self.catching_up:  # the next chunk; each is a short transaction of its own
            return max(min(timeout, self.catch_up_at - now), _MIN_WAIT)
        reopens = reopens_at(self.circuit, self.circuit_policy)
        if reopens is not None and reopens > now:
            # Open circuit: nothing to claim or start until the probe may go.
            return max(min(timeout, reopens - now), _MIN_WAIT)
        paused_until = self.concurrency.paused_until
        if paused_until > now:
            # Retry-After: the receiver asked for a pause; wake when it ends.
            return max(min(timeout, paused_until - now), _MIN_WAIT)
        if self.wants_more and self.poll_at > now:
            timeout = min(timeout, self.poll_at - now)
        if self.book.waiting and self.gather_until is not None and self.gather_until > now:
            timeout = min(timeout, self.gather_until - now)  # a partial batch is due
        return max(timeout, _MIN_WAIT)

    def takes_offers(self, now: float) -> bool:
        """Takes fresh deliveries in memory. An ordered lane takes only those that head
        their device's queue (the store says which, see bridge.store.heads), and none
        when it batches: its claims take a device's run of deliveries together."""
        return (
            not self.paused
            and self.capacity > 0
            and self.run_length == 1
            and not self.holding_back(now)
        )

    def take(
        self, claimed: Sequence[Delivery], *, room: int, next_due: float | None, now: float
    ) -> None:
        """Hold what a claim returned and set when to ask the store again."""
        self.book.take(claimed)
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

    def start_catch_up(self) -> None:
        """Catch up from the first chunk (see the module docstring)."""
        if not self.catching_up:
            self.catching_up = True
            self.catch_up_cursor = None
            self.caught_up = 0
        self.wake.set()

    def refresh(self, stored: SubscriptionState) -> None:
        """Learn what other instances stored: a failing streak this lane has not seen
        (its next success ends it, and starts the catch-up) and a catch-up that is not
        finished (this lane helps finish it: a crashed instance's, say)."""
        unseen = stored.failing_since is not None and self.state.failing_since is None
        if unseen and not self.paused and self.ending_streak is None:
            self.state = replace(self.state, failing_since=stored.failing_since)
        if stored.catching_up is not None and not self.catching_up:
            self.start_catch_up()

    @property
    def standing(self) -> Standing:
        return Standing(self.circuit, self.concurrency, self.state.failing_since)

    def adopt(self, verdict: Verdict, *, delivered: bool, now: float) -> None:
        """Take the standing a judged result left (see :func:`bridge.core.health.judge`)."""
        standing = verdict.standing
        self.circuit = standing.circuit
        self.concurrency = standing.limit
        if delivered:
            self.state = replace(self.state, last_success=now, failing_since=None)
        else:
            self.state = replace(self.state, last_failure=now, failing_since=standing.failing_since)
