"""What one attempt's result tells about its endpoint: a pure judgement.

A lane's *standing* is what it knows of its receiver's health: the circuit
breaker (:mod:`bridge.core.circuit`), the adaptive in-flight limit
(:mod:`bridge.core.concurrency`) and the failing streak (since when every
attempt has failed). :func:`judge` takes one result and returns the new
standing with what changed, as plain values; the dispatcher's edge
(:mod:`bridge.delivery.health`) turns those into effects: metrics, log lines,
the saved subscription state, alerts, a disabled subscription.

- a 410 Gone disables the subscription (the receiver says it is gone);
- a streak longer than ``disable_after`` disables it;
- a streak that starts or ends is worth saving, so that every instance and a
  restart see it;
- the circuit opens, re-opens or closes as :func:`bridge.core.circuit.record` says,
  and an opening circuit starts the limit over from slow start.

Nothing here reads the clock: ``now`` is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.core import concurrency
from bridge.core.circuit import Circuit, CircuitPolicy, record
from bridge.core.outcomes import AttemptResult

__all__ = [
    "CircuitChange",
    "HealthPolicy",
    "Standing",
    "StreakChange",
    "Verdict",
    "judge",
    "limit_signal",
]

CircuitChange = Literal["opened", "reopened", "closed"] | None
"""``opened``: a closed circuit opened (an outage begins); ``reopened``: a failed probe
opened it again; ``closed``: the endpoint answers again."""
StreakChange = Literal["started", "ended"] | None


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The knobs of one lane's judgement (from its subscription and ``retry``)."""

    circuit: CircuitPolicy
    limit: concurrency.LimitPolicy
    disable_after: float  # seconds of failing streak before the subscription is disabled


@dataclass(frozen=True, slots=True)
class Standing:
    """What a lane knows of its endpoint's health."""

    circuit: Circuit
    limit: concurrency.ConcurrencyLimit
    failing_since: float | None = None  # the first failure of the current streak


@dataclass(frozen=True, slots=True)
class Verdict:
    """The standing after one result, and what changed."""

    standing: Standing
    limit_changed: bool
    circuit: CircuitChange
    streak: StreakChange
    disable: Literal["gone", "disable_after"] | None  # why the subscription must stop
    failing_for: float  # seconds the streak has lasted (0 when the attempt succeeded)


def limit_signal(result: AttemptResult) -> concurrency.Failure | None:
    """What an attempt tells the concurrency limiter; None: the receiver answered."""
    status = result.status_code
    if status in (429, 503):
        return "throttled"
    if status is not None and status < 500:
        return None  # 2xx, and 4xx the receiver chose to give: it is keeping up
    if status is None and (result.error or "").startswith("timeout"):
        return "timeout"
    return "error"


def judge(
    standing: Standing,
    policy: HealthPolicy,
    *,
    result: AttemptResult,
    delivered: bool,
    in_flight: int,
    now: float,
) -> Verdict:
    """The lane's standing after ``result`` (``delivered``: its delivery is settled as
    delivered); ``in_flight`` counts the attempts in flight, this one included."""
    limit = _adapted(standing.limit, policy.limit, result, in_flight, now)
    limit_changed = limit.allowed != standing.limit.allowed
    circuit = record(standing.circuit, policy.circuit, success=delivered, now=now)
    change: CircuitChange = None
    if circuit.is_open and circuit.opened_at != standing.circuit.opened_at:
        change = "reopened" if standing.circuit.is_open else "opened"
        opened = concurrency.circuit_opened(limit, policy.limit)
        limit_changed = limit_changed or opened.allowed != limit.allowed
        limit = opened
    elif standing.circuit.is_open and not circuit.is_open:
        change = "closed"
    if delivered:
        ended: StreakChange = "ended" if standing.failing_since is not None else None
        return Verdict(
            Standing(circuit, limit, None),
            limit_changed,
            change,
            ended,
            None,
            0.0,
        )
    since = standing.failing_since if standing.failing_since is not None else now
    failing_for = now - since
    disable: Literal["gone", "disable_after"] | None = None
    if result.outcome == "gone":
        disable = "gone"
    elif failing_for > policy.disable_after:
        disable = "disable_after"
    started: StreakChange = "started" if standing.failing_since is None else None
    return Verdict(
        Standing(circuit, limit, since), limit_changed, change, started, disable, failing_for
    )


def _adapted(
    limit: concurrency.ConcurrencyLimit,
    policy: concurrency.LimitPolicy,
    result: AttemptResult,
    in_flight: int,
    now: float,
) -> concurrency.ConcurrencyLimit:
    signal = limit_signal(result)
    if signal is None:
        return concurrency.after_success(
            limit, policy, latency=result.latency_ms / 1000, in_flight=in_flight, now=now
        )
    return concurrency.after_failure(
        limit, policy, kind=signal, now=now, retry_after=result.retry_after
    )
