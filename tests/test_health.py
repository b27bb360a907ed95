"""The pure judgement of one attempt's result (bridge.core.health.judge)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from bridge.core import concurrency
from bridge.core.circuit import Circuit, CircuitPolicy, CircuitState, admit
from bridge.core.health import HealthPolicy, Standing, judge
from bridge.core.outcomes import AttemptResult

POLICY = HealthPolicy(
    CircuitPolicy(failures=3, cool_down=10.0),
    concurrency.LimitPolicy(cap=32, initial=8),
    disable_after=100.0,
)
OK = AttemptResult("delivered", 200, 5.0, None, None, None, None, None)
FAILED = AttemptResult("failed", 500, 5.0, "HTTP 500", None, None, None, None)
GONE = AttemptResult("gone", 410, 5.0, "HTTP 410", None, None, None, None)


def _fresh() -> Standing:
    return Standing(Circuit(), concurrency.start(POLICY.limit))


def test_a_streak_starts_goes_on_and_ends() -> None:
    first = judge(_fresh(), POLICY, result=FAILED, delivered=False, in_flight=1, now=10.0)
    assert (first.streak, first.standing.failing_since, first.failing_for) == ("started", 10.0, 0)
    second = judge(first.standing, POLICY, result=FAILED, delivered=False, in_flight=1, now=15.0)
    assert (second.streak, second.standing.failing_since, second.failing_for) == (None, 10.0, 5)
    ended = judge(second.standing, POLICY, result=OK, delivered=True, in_flight=1, now=20.0)
    assert (ended.streak, ended.standing.failing_since, ended.disable) == ("ended", None, None)
    quiet = judge(ended.standing, POLICY, result=OK, delivered=True, in_flight=1, now=21.0)
    assert quiet.streak is None


def test_gone_and_a_long_streak_disable() -> None:
    gone = judge(_fresh(), POLICY, result=GONE, delivered=False, in_flight=1, now=1.0)
    assert gone.disable == "gone"
    failing = replace(_fresh(), failing_since=0.0)
    short = judge(failing, POLICY, result=FAILED, delivered=False, in_flight=1, now=100.0)
    assert short.disable is None
    long = judge(failing, POLICY, result=FAILED, delivered=False, in_flight=1, now=100.5)
    assert long.disable == "disable_after"


def test_the_circuit_opens_reopens_and_closes_and_an_opening_restarts_the_limit() -> None:
    standing = replace(_fresh(), limit=replace(concurrency.start(POLICY.limit), limit=30.0))
    changes = []
    for now in (1.0, 2.0, 3.0):
        verdict = judge(standing, POLICY, result=FAILED, delivered=False, in_flight=1, now=now)
        standing = verdict.standing
        changes.append(verdict.circuit)
    assert changes == [None, None, "opened"]
    assert standing.circuit.state is CircuitState.OPEN
    assert standing.limit.allowed == POLICY.limit.initial
    circuit, admitted = admit(standing.circuit, POLICY.circuit, 14.0)  # the probe goes
    assert admitted
    probe = replace(standing, circuit=circuit)
    failed = judge(probe, POLICY, result=FAILED, delivered=False, in_flight=1, now=14.5)
    assert failed.circuit == "reopened"
    closed = judge(probe, POLICY, result=OK, delivered=True, in_flight=1, now=14.5)
    assert closed.circuit == "closed"
    assert closed.standing.circuit == Circuit()


@given(
    results=st.lists(st.sampled_from([OK, FAILED, GONE]), min_size=1, max_size=40),
)
def test_failing_since_is_the_first_failure_after_the_last_success(
    results: list[AttemptResult],
) -> None:
    standing = _fresh()
    first_failure: float | None = None
    for n, result in enumerate(results):
        delivered = result is OK
        verdict = judge(
            standing, POLICY, result=result, delivered=delivered, in_flight=1, now=float(n)
        )
        standing = verdict.standing
        if delivered:
            first_failure = None
        elif first_failure is None:
            first_failure = float(n)
        assert standing.failing_since == first_failure
        assert 1 <= standing.limit.allowed <= POLICY.limit.cap
        assert verdict.disable != "gone" or result is GONE
