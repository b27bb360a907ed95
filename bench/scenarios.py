"""The scenarios of the performance issue and their targets (for HookBridge)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    events: int
    rate: float = 0.0  # events/s; 0 = a burst as fast as the publisher can
    delay: float = 0.0  # the receiver's extra answer time, seconds
    fail_rate: float = 0.0  # the share of requests the receiver answers with 500
    receiver_down: bool = False  # publish everything first, then start the receiver
    max_in_flight: int = 64
    stall: float = 20.0  # give up when nothing new arrived for this long
    postgres: bool = False  # HookBridge only: two instances on one PostgreSQL store

    @property
    def duration(self) -> float:
        return self.events / self.rate if self.rate else 0.0

    def deadline(self) -> float:
        """The longest a run may take after publishing starts; a slow peer is cut off."""
        if self.receiver_down:
            return 1800.0
        return max(60.0, self.duration * 2 + 40.0)


def scenarios(*, quick: bool, events: int | None, backlog: int) -> dict[str, Scenario]:
    """All scenarios by name; ``--quick`` scales them down to a few seconds each."""
    burst = events or (3_000 if quick else 20_000)
    steady = events or (3_000 if quick else 20_000)
    all_ = [
        Scenario("burst", "20,000-event QoS 1 burst (also: peak RSS)", burst),
        Scenario("steady", "1,000 ev/s steady", steady, rate=1000),
        Scenario("slow", "1,000 ev/s, receiver adds 50 ms", steady, rate=1000, delay=0.05),
        Scenario(
            "failing", "1,000 ev/s, receiver fails 10 % with 500", steady, rate=1000, fail_rate=0.1
        ),
        Scenario(
            "backlog",
            "events published while the receiver is down, then it comes back",
            backlog,
            receiver_down=True,
            stall=30.0,
        ),
        Scenario(
            "postgres",
            "PostgreSQL store: one instance vs two (shared subscription)",
            burst,
            postgres=True,
        ),
    ]
    out = {s.name: s for s in all_}
    if quick and not events:
        out["backlog"] = replace(out["backlog"], events=min(backlog, 5_000))
    return out
