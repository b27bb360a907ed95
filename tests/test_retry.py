"""The retry schedule and the classification of an attempt into a delivery state."""

from __future__ import annotations

import errno
import itertools
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import RetrySettings
from bridge.core.retry import decide, endpoint_wide, next_delay, parse_retry_after, schedule_after
from bridge.delivery.http1 import CUT_OFF, NO_RESPONSE, TLS_FAILED, TLS_UNTRUSTED, connect_failure
from bridge.delivery.send import AttemptResult
from bridge.store.rows import DeliveryStatus

NOW = 1_700_000_000.0
SCHEDULE = [5.0, 300.0, 1800.0]
RETRY = RetrySettings(schedule=SCHEDULE, jitter=0.2, retry_after_cap=3600.0)

delays = st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=10)
unit = st.floats(min_value=0, max_value=1, exclude_max=True)


def _result(
    outcome: Literal["delivered", "failed", "gone"],
    status: int | None,
    retry_after: float | None = None,
) -> AttemptResult:
    return AttemptResult(
        outcome=outcome,
        status_code=status,
        latency_ms=1.0,
        error=None if outcome == "delivered" else "x",
        response_excerpt=None,
        response_body=None,
        retry_after=retry_after,
        content_type=None,
    )


def test_first_retry_uses_the_first_delay() -> None:
    assert next_delay(1, SCHEDULE, 0.2, 0.5) == pytest.approx(5.0)
    assert next_delay(1, SCHEDULE, 0.2, 0.0) == pytest.approx(4.0)
    assert next_delay(2, SCHEDULE, 0.0, 0.9) == pytest.approx(300.0)


def test_schedule_exhausted_is_none() -> None:
    assert next_delay(3, SCHEDULE, 0.2, 0.5) == pytest.approx(1800.0)
    assert next_delay(4, SCHEDULE, 0.2, 0.5) is None
    assert next_delay(1, [], 0.2, 0.5) is None


def test_attempts_made_starts_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        next_delay(0, SCHEDULE, 0.2, 0.5)


@given(schedule=delays, jitter=st.floats(min_value=0, max_value=1), rand=unit, data=st.data())
def test_delay_stays_within_jitter_bounds(
    schedule: list[float], jitter: float, rand: float, data: st.DataObject
) -> None:
    attempts = data.draw(st.integers(min_value=1, max_value=len(schedule)))
    delay = next_delay(attempts, schedule, jitter, rand)
    base = schedule[attempts - 1]
    assert delay is not None
    assert base * (1 - jitter) - 1e-6 <= delay <= base * (1 + jitter) + 1e-6
    assert delay >= 0


@given(schedule=delays, rand=unit)
def test_sorted_schedule_gives_non_decreasing_delays(schedule: list[float], rand: float) -> None:
    schedule = sorted(schedule)
    produced = [next_delay(n, schedule, 0.2, rand) for n in range(1, len(schedule) + 1)]
    values = [d for d in produced if d is not None]
    assert len(values) == len(schedule)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert next_delay(len(schedule) + 1, schedule, 0.2, rand) is None


def test_2xx_is_delivered() -> None:
    outcome = decide(_result("delivered", 204), attempts_made=1, retry=RETRY, now=NOW, rand=0.5)
    assert outcome.status is DeliveryStatus.DELIVERED


def test_410_is_dead_gone() -> None:
    outcome = decide(_result("gone", 410), attempts_made=1, retry=RETRY, now=NOW, rand=0.5)
    assert (outcome.status, outcome.reason) == (DeliveryStatus.DEAD, "gone")


@pytest.mark.parametrize("status", [None, 302, 400, 408, 429, 500, 503])
def test_failures_are_retried_on_schedule(status: int | None) -> None:
    outcome = decide(_result("failed", status), attempts_made=2, retry=RETRY, now=NOW, rand=0.5)
    assert outcome.status is DeliveryStatus.PENDING
    assert outcome.next_attempt_at == pytest.approx(NOW + 300.0)


def test_exhausted_is_dead() -> None:
    outcome = decide(_result("failed", 500), attempts_made=4, retry=RETRY, now=NOW, rand=0.5)
    assert (outcome.status, outcome.reason) == (DeliveryStatus.DEAD, "exhausted")


def test_retry_after_extends_the_delay_up_to_the_cap() -> None:
    later = decide(_result("failed", 429, 120.0), attempts_made=1, retry=RETRY, now=NOW, rand=0.5)
    assert later.next_attempt_at == pytest.approx(NOW + 120.0)
    capped = decide(_result("failed", 503, 1e9), attempts_made=1, retry=RETRY, now=NOW, rand=0.5)
    assert capped.next_attempt_at == pytest.approx(NOW + 3600.0)
    # A Retry-After shorter than the schedule does not make the retry sooner.
    sooner = decide(_result("failed", 429, 1.0), attempts_made=2, retry=RETRY, now=NOW, rand=0.5)
    assert sooner.next_attempt_at == pytest.approx(NOW + 300.0)


@given(
    attempts=st.integers(min_value=1, max_value=3),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1e7)),
    rand=unit,
)
def test_next_attempt_is_never_in_the_past_nor_past_the_cap(
    attempts: int, retry_after: float | None, rand: float
) -> None:
    outcome = decide(
        _result("failed", 503, retry_after), attempts_made=attempts, retry=RETRY, now=NOW, rand=rand
    )
    assert outcome.next_attempt_at is not None
    longest = max(SCHEDULE[attempts - 1] * 1.2, RETRY.retry_after_cap)
    assert NOW <= outcome.next_attempt_at <= NOW + longest + 1e-6
    if retry_after is not None:
        assert outcome.next_attempt_at >= NOW + min(retry_after, RETRY.retry_after_cap) - 1e-6


def test_parse_retry_after_delta_seconds() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("  7 ", NOW) == 7.0
    assert parse_retry_after("-5", NOW) == 0.0


def test_parse_retry_after_http_date() -> None:
    moment = datetime.fromtimestamp(NOW + 90, tz=UTC)
    assert parse_retry_after(format_datetime(moment, usegmt=True), NOW) == pytest.approx(90.0)
    past = datetime.fromtimestamp(NOW - 90, tz=UTC)
    assert parse_retry_after(format_datetime(past, usegmt=True), NOW) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "1.5", "12abc", "Wed, 99 Foo 2015"])
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(value=st.text(max_size=80))
def test_parse_retry_after_never_raises(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or parsed >= 0


def _failure(error: str) -> AttemptResult:
    return AttemptResult.failure(error, latency_ms=1.0)


def test_endpoint_wide_failures_are_the_ones_no_receiver_answered() -> None:
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    reset = OSError(errno.ECONNRESET, "Connection reset by peer")
    wide = [
        _failure(connect_failure(refused)),
        _failure(connect_failure(reset)),
        _failure("timeout after 10s"),
        _failure(NO_RESPONSE),
        _failure(CUT_OFF),
        _result("failed", 500),
        _result("failed", 503, retry_after=30.0),
    ]
    narrow = [
        _result("failed", 400),
        _result("failed", 429),
        _result("failed", 302),
        _result("gone", 410),
        _result("delivered", 200),
        _failure(TLS_FAILED),
        _failure(TLS_UNTRUSTED),
        _failure("DNS lookup of hooks.example.com failed"),
        _failure("the target 10.0.0.1 is a private address"),
        _failure("internal error: RuntimeError"),
    ]
    assert all(endpoint_wide(r) for r in wide)
    assert not any(endpoint_wide(r) for r in narrow)


@given(steps=st.integers(min_value=0, max_value=3), rand=unit)
def test_a_failed_early_attempt_waits_its_step_again(steps: int, rand: float) -> None:
    failed = _result("failed", 503)
    normal = schedule_after(failed, steps=steps, early=False, retry=RETRY, now=NOW, rand=rand)
    early = schedule_after(failed, steps=steps, early=True, retry=RETRY, now=NOW, rand=rand)
    if steps == len(SCHEDULE):
        assert normal.status is DeliveryStatus.DEAD  # the schedule is used up
    else:
        assert (normal.retry_step, normal.endpoint_wide) == (steps + 1, True)
        assert normal.next_attempt_at == NOW + next_delay(steps + 1, SCHEDULE, 0.2, rand)
    # Early: never a step further, never closer to dead.
    assert early.status is DeliveryStatus.PENDING
    assert early.retry_step == max(steps, 1)
    assert early.next_attempt_at == NOW + next_delay(max(steps, 1), SCHEDULE, 0.2, rand)


def test_a_retry_after_is_remembered_as_a_pause() -> None:
    asked = schedule_after(
        _result("failed", 503, retry_after=7200.0),
        steps=0,
        early=False,
        retry=RETRY,
        now=NOW,
        rand=0.5,
    )
    assert asked.not_before == NOW + 3600.0  # capped
    plain = schedule_after(
        _result("failed", 503), steps=0, early=False, retry=RETRY, now=NOW, rand=0.5
    )
    assert plain.not_before is None
