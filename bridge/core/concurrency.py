"""Adaptive concurrency per subscription: how many attempts may be in flight at once.

A pure, latency-based limiter in the spirit of TCP congestion control. It
takes values (the attempt's outcome, its latency, how many attempts were in
flight, ``now``) and returns the next :class:`ConcurrencyLimit`; it never
touches the clock, the network or the lane.

- **Slow start.** A lane starts at ``initial`` and grows by one for every
  healthy answer while it is using its window, so the limit doubles per
  round trip until the first sign of congestion.
- **Healthy** means answered (2xx, or a 4xx the receiver chose to give)
  within ``tolerance`` times the baseline latency plus ``slack``. The
  baseline is the lowest latency seen; slower answers pull it up slowly, in
  time rather than per answer (most of the gap closes within ``relearn``
  seconds), so an endpoint whose normal latency rose is re-learned without a
  busy lane talking itself into more parallelism.
- **Congestion avoidance.** After slow start, healthy answers grow the limit
  by about one per window of answers; a slow answer while the lane uses at
  least half its limit shrinks it, by ``shrink`` when a little slow and by
  up to ``backoff`` when far too slow (at most once per observed
  latency, so one slow moment does not collapse it). A slow answer to a lane
  that is hardly busy says nothing about its parallelism.
- **Timeouts** cut the limit by ``backoff``: the receiver is struggling.
- **429 and 503** cut it too and pause the lane until ``Retry-After`` (or
  ``default_pause``) has passed.
- **Plain 5xx and network errors** leave the limit alone: the retry schedule
  and the circuit breaker deal with a failing endpoint, and halving on every
  error would starve a receiver that fails one request in ten.
- **An opening circuit** resets the limit: the endpoint starts from slow
  start again when it answers.

The limit always stays within ``[floor, cap]``; ``cap`` is the subscription's
``max_in_flight``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "ConcurrencyLimit",
    "Failure",
    "LimitPolicy",
    "after_failure",
    "after_success",
    "circuit_opened",
    "start",
]

Failure = Literal["error", "timeout", "throttled"]
"""``error``: a 5xx or network error; ``timeout``: no answer in time; ``throttled``: 429/503."""


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """The knobs of one lane's limiter (defaults suit any HTTP receiver)."""

    cap: int = 256
    floor: int = 1
    # Where a fresh lane starts. Slow start doubles per round trip, so a low start
    # leaves a slow receiver behind at first: at 1,000 ev/s with a 200 ms receiver
    # (200 in flight needed), starting at 8 gave a p99 of 700-800 ms, at 64 of 150-160 ms.
    initial: int = 64
    tolerance: float = 2.0  # latency up to this multiple of the baseline is healthy
    # Seconds on top: jitter, and the lag of the bridge's own busy event loop, are
    # not the receiver's congestion (measured: a local 1 ms receiver shows 20-50 ms
    # under a burst on two cores; shrinking then only lowers throughput).
    slack: float = 0.05
    shrink: float = 0.9  # factor on a slow answer
    backoff: float = 0.5  # factor on a timeout or a throttle
    default_pause: float = 1.0  # seconds a 429/503 without Retry-After pauses the lane
    max_pause: float = 300.0  # a Retry-After beyond this pauses only this long
    relearn: float = 60.0  # seconds in which a higher normal latency is mostly adopted

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.cap:
            raise ValueError("a limit policy needs 1 <= floor <= cap")


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """Where one lane's limiter stands."""

    limit: float
    slow_start: bool = True
    baseline: float | None = None  # seconds; None until the first healthy answer
    baseline_at: float = 0.0  # when the baseline last moved
    hold_until: float = 0.0  # no second shrink before this moment
    paused_until: float = 0.0  # no new attempt before this moment (Retry-After)

    @property
    def allowed(self) -> int:
        """Attempts that may be in flight at once."""
        return max(1, int(self.limit))

    def permits(self, in_flight: int, now: float) -> bool:
        """True when one more attempt may start now."""
        return now >= self.paused_until and in_flight < self.allowed


def start(policy: LimitPolicy) -> ConcurrencyLimit:
    """A fresh lane: slow start from ``initial`` (within floor and cap)."""
    return ConcurrencyLimit(limit=float(_clamp(policy.initial, policy)))


def _clamp(value: float, policy: LimitPolicy) -> float:
    return float(min(max(value, policy.floor), policy.cap))


def after_success(
    state: ConcurrencyLimit,
    policy: LimitPolicy,
    *,
    latency: float,
    in_flight: int,
    now: float,
) -> ConcurrencyLimit:
    """An answer came back (2xx, or a 4xx other than 429) after ``latency`` seconds.

    ``in_flight`` counts the attempts in flight when the answer came,
    this one included; the limit grows only while the lane is using at least
    half of it (a lane that is not busy learns nothing about more parallelism).
    """
    latency = max(0.0, latency)
    baseline = state.baseline
    bound = latency if baseline is None else baseline * policy.tolerance + policy.slack
    healthy = latency <= bound
    if baseline is None or latency < baseline:
        baseline = latency
    else:
        share = min(1.0, max(0.0, now - state.baseline_at) / policy.relearn)
        baseline += (latency - baseline) * share
    busy = 2 * in_flight >= state.allowed
    if not healthy:
        if now < state.hold_until or not busy:
            return replace(state, slow_start=False, baseline=baseline, baseline_at=now)
        # In proportion to how far past healthy it was: a little slow, a little
        # less (``shrink``); twice as slow, half (never below ``backoff``).
        factor = max(policy.backoff, min(policy.shrink, bound / max(latency, 1e-9)))
        return replace(
            state,
            limit=_clamp(state.limit * factor, policy),
            slow_start=False,
            baseline=baseline,
            baseline_at=now,
            hold_until=now + latency,
        )
    limit = state.limit
    if busy:
        limit += 1.0 if state.slow_start else 1.0 / max(limit, 1.0)
    return replace(state, limit=_clamp(limit, policy), baseline=baseline, baseline_at=now)


def after_failure(
    state: ConcurrencyLimit,
    policy: LimitPolicy,
    *,
    kind: Failure,
    now: float,
    retry_after: float | None = None,
) -> ConcurrencyLimit:
    """An attempt failed; see the module docstring for what each kind does."""
    if kind == "error":
        return state
    paused_until = state.paused_until
    if kind == "throttled":
        wait = policy.default_pause if retry_after is None else retry_after
        paused_until = max(paused_until, now + min(max(wait, 0.0), policy.max_pause))
    if now < state.hold_until:
        return replace(state, slow_start=False, paused_until=paused_until)
    hold = state.baseline if state.baseline is not None else 0.0
    return replace(
        state,
        limit=_clamp(state.limit * policy.backoff, policy),
        slow_start=False,
        hold_until=now + max(hold * policy.tolerance + policy.slack, 0.0),
        paused_until=paused_until,
    )


def circuit_opened(state: ConcurrencyLimit, policy: LimitPolicy) -> ConcurrencyLimit:
    """The lane's circuit opened: start over from slow start (a pause still holds)."""
    return replace(start(policy), paused_until=state.paused_until)
