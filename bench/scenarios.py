"""The scenarios of the performance issue and their targets (for HookBridge).

Two scenario sets share one harness:

* **stock** (the headline): mosquitto with its defaults except
  ``max_queued_messages 0`` (so nothing is dropped; any drop is counted), and
  HookBridge with its default configuration apart from the overrides listed
  in :data:`bench.peers.hookbridge.OVERRIDES`;
* **tuned**: mosquitto with ``max_inflight_messages 1000`` and HookBridge
  with ``max_in_flight: 64``, the set the project measured first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["HEADLINE", "SETS", "Scenario", "scenarios"]

BrokerKind = Literal["stock", "tuned"]

TUNED_MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    events: int
    rate: float = 0.0  # events/s; 0 = a burst as fast as the publisher can
    delay: float = 0.0  # the receiver's extra answer time, seconds
    fail_rate: float = 0.0  # the share of requests the receiver answers with 500
    receiver_down: bool = False  # publish everything first, then start the receiver
    broker: BrokerKind = "stock"
    max_in_flight: int | None = None  # None: HookBridge's default
    stall: float = 20.0  # give up when nothing new arrived for this long
    postgres: bool = False  # HookBridge only: two instances on one PostgreSQL store
    ordered: bool = False  # HookBridge: the subscription is FIFO per device (ordered: true)
    # HookBridge: another process holds a read transaction on the SQLite file for this
    # long, from ``reader_after`` seconds into the publishing (bench.reader).
    reader_hold: float = 0.0
    reader_after: float = 10.0

    @property
    def duration(self) -> float:
        return self.events / self.rate if self.rate else 0.0

    def deadline(self) -> float:
        """The longest a run may take after publishing starts; a slow peer is cut off."""
        if self.receiver_down:
            return 1800.0
        return max(60.0, self.duration * 2 + 40.0)


def _tuned(scenario: Scenario) -> Scenario:
    return replace(scenario, broker="tuned", max_in_flight=TUNED_MAX_IN_FLIGHT)


def scenarios(*, quick: bool, events: int | None, backlog: int) -> dict[str, Scenario]:
    """All scenarios by name; ``--quick`` scales them down to a few seconds each."""
    burst = events or (3_000 if quick else 20_000)
    steady = events or (3_000 if quick else 20_000)
    all_ = [
        Scenario("burst", "stock: 20,000-event QoS 1 burst (also: peak RSS)", burst),
        Scenario("steady", "stock: 1,000 ev/s steady", steady, rate=1000),
        Scenario(
            "steady200",
            "stock: 200 ev/s steady (a moderate fleet)",
            events or (1_000 if quick else 24_000),
            rate=200,
        ),
        Scenario("slow", "stock: 1,000 ev/s, receiver adds 50 ms", steady, rate=1000, delay=0.05),
        Scenario(
            "slow200", "stock: 1,000 ev/s, receiver adds 200 ms", steady, rate=1000, delay=0.2
        ),
        Scenario("failing", "stock: 1,000 ev/s, 10 % fail", steady, rate=1000, fail_rate=0.1),
        Scenario(
            "ordered",
            "stock: 1,000 ev/s, HookBridge's subscription ordered per device",
            steady,
            rate=1000,
            ordered=True,
        ),
        Scenario(
            "reader",
            "stock: 200 ev/s; from 10 s in, another process holds a read transaction "
            "on HookBridge's SQLite file for 60 s",
            events or (2_000 if quick else 16_000),
            rate=200,
            reader_hold=6.0 if quick else 60.0,
            reader_after=2.0 if quick else 10.0,
        ),
        _tuned(Scenario("tuned-burst", "tuned: 20,000-event QoS 1 burst", burst)),
        _tuned(Scenario("tuned-steady", "tuned: 1,000 ev/s steady", steady, rate=1000)),
        _tuned(Scenario("tuned-slow", "tuned: receiver adds 50 ms", steady, rate=1000, delay=0.05)),
        _tuned(
            Scenario(
                "backlog",
                "tuned: events published while the receiver is down, then it comes back",
                backlog,
                receiver_down=True,
                stall=30.0,
            )
        ),
        _tuned(
            Scenario(
                "postgres",
                "tuned: PostgreSQL store, one instance vs two (shared subscription)",
                burst,
                postgres=True,
            )
        ),
        Scenario(
            "postgres-steady",
            "stock: PostgreSQL store at 1,000 ev/s, one instance vs two",
            steady,
            rate=1000,
            postgres=True,
        ),
    ]
    out = {s.name: s for s in all_}
    if quick and not events:
        out["backlog"] = replace(out["backlog"], events=min(backlog, 5_000))
    return out


HEADLINE = ["burst", "steady", "steady200", "slow", "slow200", "failing", "tuned-burst"]
"""What the quiet-machine headline rounds run (``--set headline``)."""

SETS: dict[str, list[str]] = {
    "headline": HEADLINE,
    "stock": ["burst", "steady", "slow", "slow200", "failing", "ordered"],
    "faults": ["reader"],
    "tuned": ["tuned-burst", "tuned-steady", "tuned-slow", "backlog", "postgres"],
    "postgres": ["postgres", "postgres-steady"],
    "all": [
        *HEADLINE,
        "ordered",
        "tuned-steady",
        "tuned-slow",
        "backlog",
        "postgres",
        "postgres-steady",
        "reader",
    ],
}
