"""The adaptive concurrency limiter: a pure state machine, checked with hypothesis."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.concurrency import (
    ConcurrencyLimit,
    LimitPolicy,
    after_failure,
    after_success,
    circuit_opened,
    start,
)

POLICY = LimitPolicy()


@dataclass(frozen=True)
class Answer:
    """One step of a random history: an answer, or a failure of some kind."""

    kind: str  # "ok", "error", "timeout", "throttled", "circuit"
    latency: float
    in_flight: int
    retry_after: float | None


answers = st.builds(
    Answer,
    kind=st.sampled_from(["ok", "ok", "ok", "error", "timeout", "throttled", "circuit"]),
    latency=st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
    in_flight=st.integers(min_value=0, max_value=300),
    retry_after=st.none() | st.floats(min_value=-5.0, max_value=1e6, allow_nan=False),
)
policies = st.builds(
    lambda floor, extra, initial: LimitPolicy(cap=floor + extra, floor=floor, initial=initial),
    floor=st.integers(min_value=1, max_value=8),
    extra=st.integers(min_value=0, max_value=300),
    initial=st.integers(min_value=0, max_value=400),
)


def step(state: ConcurrencyLimit, policy: LimitPolicy, a: Answer, now: float) -> ConcurrencyLimit:
    if a.kind == "ok":
        return after_success(state, policy, latency=a.latency, in_flight=a.in_flight, now=now)
    if a.kind == "circuit":
        return circuit_opened(state, policy)
    kind = {"error": "error", "timeout": "timeout", "throttled": "throttled"}[a.kind]
    return after_failure(state, policy, kind=kind, now=now, retry_after=a.retry_after)  # type: ignore[arg-type]


@given(policies, st.lists(answers, max_size=200))
def test_the_limit_stays_between_floor_and_cap(policy: LimitPolicy, history: list[Answer]) -> None:
    state = start(policy)
    now = 1000.0
    for answer in history:
        now += 0.01
        state = step(state, policy, answer, now)
        assert policy.floor <= state.limit <= policy.cap
        assert 1 <= state.allowed <= policy.cap


def _replayed(policy: LimitPolicy, history: list[Answer]) -> ConcurrencyLimit:
    """The state after ``history``, one answer a second."""
    state = start(policy)
    for i, answer in enumerate(history):
        state = step(state, policy, answer, 1000.0 + i)
    return state


@given(policies, st.lists(answers, max_size=50), answers)
def test_a_plain_error_never_changes_the_limit(
    policy: LimitPolicy, history: list[Answer], last: Answer
) -> None:
    state = _replayed(policy, history)
    after = after_failure(state, policy, kind="error", now=2000.0, retry_after=last.retry_after)
    assert after == state  # a 5xx is the circuit's and the schedule's business


@given(policies, st.lists(answers, max_size=50), st.sampled_from(["timeout", "throttled"]))
def test_timeouts_and_throttles_never_grow_the_limit(
    policy: LimitPolicy, history: list[Answer], kind: str
) -> None:
    state = _replayed(policy, history)
    after = after_failure(state, policy, kind=kind, now=2000.0)  # type: ignore[arg-type]
    assert after.limit <= state.limit
    assert not after.slow_start


def test_a_timeout_halves_the_limit_once_per_window() -> None:
    state = ConcurrencyLimit(limit=100.0, slow_start=False, baseline=0.05)
    first = after_failure(state, POLICY, kind="timeout", now=10.0)
    assert first.limit == 50.0
    # Many attempts that timed out together are one signal, not fifty.
    again = after_failure(first, POLICY, kind="timeout", now=10.01)
    assert again.limit == 50.0
    later = after_failure(again, POLICY, kind="timeout", now=11.0)
    assert later.limit == 25.0


@given(
    st.floats(min_value=-10.0, max_value=1e5, allow_nan=False) | st.none(),
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
)
def test_a_throttle_pauses_the_lane_for_retry_after(retry_after: float | None, now: float) -> None:
    state = start(POLICY)
    after = after_failure(state, POLICY, kind="throttled", now=now, retry_after=retry_after)
    wanted = POLICY.default_pause if retry_after is None else max(0.0, retry_after)
    assert after.paused_until == pytest.approx(now + min(wanted, POLICY.max_pause))
    if after.paused_until > now:
        assert not after.permits(0, now)
    assert after.permits(0, after.paused_until)


def test_an_opening_circuit_resets_to_slow_start_but_keeps_a_pause() -> None:
    state = ConcurrencyLimit(limit=200.0, slow_start=False, baseline=0.01, paused_until=50.0)
    reset = circuit_opened(state, POLICY)
    assert reset.limit == POLICY.initial
    assert reset.slow_start
    assert reset.baseline is None
    assert reset.paused_until == 50.0


def test_slow_start_doubles_per_window_of_healthy_answers() -> None:
    state = start(POLICY)
    window = state.allowed
    for _ in range(window):
        state = after_success(state, POLICY, latency=0.05, in_flight=window, now=1.0)
    assert state.allowed == 2 * window
    assert state.slow_start


def test_an_idle_lane_does_not_grow() -> None:
    state = start(POLICY)
    for _ in range(1000):
        state = after_success(state, POLICY, latency=0.05, in_flight=1, now=1.0)
    assert state.limit == POLICY.initial


@pytest.mark.parametrize("delay", [0.001, 0.05, 0.2, 0.25])
def test_a_slow_healthy_receiver_gets_the_parallelism_1000_per_second_needs(delay: float) -> None:
    """A receiver that always answers in ``delay`` needs 1000 x delay attempts in flight."""
    needed = 1000 * delay
    state = start(POLICY)
    now = 0.0
    for _ in range(20_000):
        in_flight = min(state.allowed, int(needed) + 1)  # the demand of 1,000 ev/s
        state = after_success(state, POLICY, latency=delay, in_flight=in_flight, now=now)
        now += 1 / 1000
    assert state.allowed >= needed


def test_a_receiver_that_slows_down_under_load_is_not_hammered() -> None:
    """Latency that grows with concurrency (a struggling server) keeps the limit low."""
    state = ConcurrencyLimit(limit=200.0, slow_start=False, baseline=0.05)
    now = 0.0
    for _ in range(1_000):  # a few seconds; over minutes the baseline is re-learned
        latency = 0.05 * max(1.0, state.allowed / 10)  # 50 ms, but it queues beyond 10
        state = after_success(state, POLICY, latency=latency, in_flight=state.allowed, now=now)
        now += latency / max(state.allowed, 1)
    assert state.allowed <= 40


def test_an_endpoint_whose_normal_latency_rose_is_relearned() -> None:
    """10 ms at first, then 100 ms for good: after a while 100 ms is normal, the limit grows."""
    state = ConcurrencyLimit(limit=32.0, slow_start=False, baseline=0.01, baseline_at=0.0)
    now = 0.0
    for _ in range(200):  # 2 s of 100 ms answers: congestion, the limit shrinks
        now += 0.01
        state = after_success(state, POLICY, latency=0.1, in_flight=state.allowed, now=now)
    shrunk = state.allowed
    assert shrunk < 32
    for _ in range(3000):  # 5 more minutes: re-learned, and growing again
        now += 0.1
        state = after_success(state, POLICY, latency=0.1, in_flight=state.allowed, now=now)
    assert state.baseline is not None and state.baseline > 0.04
    assert state.allowed > shrunk


@given(st.lists(st.floats(min_value=0.0001, max_value=5.0, allow_nan=False), max_size=100))
def test_healthy_fast_answers_never_shrink_the_limit(latencies: list[float]) -> None:
    state = start(POLICY)
    for i, latency in enumerate(sorted(latencies, reverse=True)):
        before = state.limit
        # Each answer at most as slow as the last one: never a sign of congestion.
        state = after_success(state, POLICY, latency=latency, in_flight=state.allowed, now=i)
        assert state.limit >= before


def test_policy_refuses_floor_above_cap() -> None:
    with pytest.raises(ValueError, match="floor"):
        LimitPolicy(cap=4, floor=8)
