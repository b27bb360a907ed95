"""The circuit breaker of one subscription: a pure state machine.

A subscription whose endpoint keeps failing should not be hammered with
every due delivery. After ``failures`` consecutive failed attempts the
circuit *opens*: the dispatcher starts no attempts for ``cool_down``
seconds, and the deliveries wait in the store (none is dropped, none burns
an attempt). When the cool-down has passed the circuit is *half-open*: one
delivery is let through as a probe. Its success closes the circuit; its
failure opens it again for another cool-down.

::

    CLOSED --N consecutive failures--> OPEN --cool-down over--> HALF_OPEN
      ^                                  ^                          |
      |                                  +------ probe failed ------+
      +------------------ any success ------------------------------+

Every function takes ``now`` and returns a new :class:`Circuit`; nothing
here touches the clock, so the rules are tested with hypothesis.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

__all__ = [
    "Circuit",
    "CircuitPolicy",
    "CircuitState",
    "admit",
    "record",
    "release_probe",
    "reopens_at",
]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """When to open (``failures`` in a row) and how long to stay open (``cool_down`` s)."""

    failures: int = 5
    cool_down: float = 10.0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Circuit:
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    probing: bool = False  # half-open: the one probe is out and not yet answered

    @property
    def is_open(self) -> bool:
        """Open or half-open: the endpoint is not trusted yet (what the metric shows)."""
        return self.state is not CircuitState.CLOSED


def reopens_at(circuit: Circuit, policy: CircuitPolicy) -> float | None:
    """When an open circuit lets its probe through; ``None`` unless open."""
    if circuit.state is not CircuitState.OPEN or circuit.opened_at is None:
        return None
    return circuit.opened_at + policy.cool_down


def admit(circuit: Circuit, policy: CircuitPolicy, now: float) -> tuple[Circuit, bool]:
    """May an attempt start now? Returns the circuit after the decision and the answer.

    Admitting the probe of a half-open circuit marks it as out, so a second
    attempt is refused until the probe's result is recorded.
    """
    if not policy.enabled or circuit.state is CircuitState.CLOSED:
        return circuit, True
    if circuit.state is CircuitState.OPEN:
        until = reopens_at(circuit, policy)
        if until is not None and now < until:
            return circuit, False
        return replace(circuit, state=CircuitState.HALF_OPEN, probing=True), True
    if circuit.probing:
        return circuit, False
    return replace(circuit, probing=True), True


def record(circuit: Circuit, policy: CircuitPolicy, *, success: bool, now: float) -> Circuit:
    """The circuit after an attempt's result.

    A success closes it whatever its state (the endpoint works). A failure
    counts towards opening when closed, re-opens a half-open circuit, and
    leaves an open one alone: attempts started before it opened may still
    be answering, and their failures are no news.
    """
    if success:
        return Circuit()
    if not policy.enabled:
        return replace(circuit, consecutive_failures=circuit.consecutive_failures + 1)
    failures = circuit.consecutive_failures + 1
    if circuit.state is CircuitState.CLOSED:
        if failures >= policy.failures:
            return Circuit(CircuitState.OPEN, failures, opened_at=now)
        return replace(circuit, consecutive_failures=failures)
    if circuit.state is CircuitState.HALF_OPEN:
        return Circuit(CircuitState.OPEN, failures, opened_at=now)
    return replace(circuit, consecutive_failures=failures)


def release_probe(circuit: Circuit) -> Circuit:
    """A probe that ended without a result (not sent, cancelled): let another go."""
    if circuit.state is CircuitState.HALF_OPEN and circuit.probing:
        return replace(circuit, probing=False)
    return circuit
