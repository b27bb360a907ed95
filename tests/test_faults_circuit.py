"""The circuit breaker: its rules (hypothesis) and a failing endpoint through a running bridge."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import parse_config
from bridge.core.circuit import (
    Circuit,
    CircuitPolicy,
    CircuitState,
    admit,
    record,
    release_probe,
    reopens_at,
)
from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, receiving
from tests.support.waiting import wait_until

policies = st.builds(
    CircuitPolicy,
    failures=st.integers(min_value=1, max_value=8),
    cool_down=st.floats(min_value=0.5, max_value=60.0),
)
# One step: time passes, then an attempt is asked for, or a result comes back.
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=40.0),
        st.sampled_from(["admit", "success", "failure", "abandon"]),
    ),
    max_size=60,
)


@given(policies, steps)
@settings(max_examples=2000)
def test_circuit_rules_hold_for_any_sequence(policy: CircuitPolicy, script: list) -> None:  # type: ignore[type-arg]
    circuit = Circuit()
    now = 1000.0
    failures_in_a_row = 0
    for elapsed, step in script:
        now += elapsed
        before = circuit
        if step == "admit":
            circuit, admitted = admit(circuit, policy, now)
            if before.state is CircuitState.CLOSED:
                assert admitted  # a closed circuit never holds anything back
            if before.state is CircuitState.OPEN:
                until = reopens_at(before, policy)
                assert until is not None
                # Nothing before the cool-down ends; the probe once it has.
                assert admitted == (now >= until)
                if admitted:
                    assert circuit.state is CircuitState.HALF_OPEN and circuit.probing
            if before.state is CircuitState.HALF_OPEN:
                # Exactly one probe at a time.
                assert admitted == (not before.probing)
        elif step == "abandon":
            circuit = release_probe(circuit)
            assert circuit.state is before.state
            assert not circuit.probing
        else:
            success = step == "success"
            circuit = record(circuit, policy, success=success, now=now)
            failures_in_a_row = 0 if success else failures_in_a_row + 1
            assert circuit.consecutive_failures == failures_in_a_row
            if success:
                assert circuit == Circuit()
            elif before.state is CircuitState.CLOSED:
                opened = failures_in_a_row >= policy.failures
                assert (circuit.state is CircuitState.OPEN) == opened
                if opened:
                    assert circuit.opened_at == now
            elif before.state is CircuitState.HALF_OPEN:
                # The probe failed: open again for a whole cool-down from now.
                assert circuit.state is CircuitState.OPEN
                assert circuit.opened_at == now
            else:
                assert circuit.opened_at == before.opened_at
        assert circuit.is_open == (circuit.state is not CircuitState.CLOSED)
        assert (circuit.opened_at is None) == (circuit.state is CircuitState.CLOSED)


@given(policies, st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=200))
@settings(max_examples=2000)
def test_open_circuit_admits_at_most_one_probe_per_cool_down(
    policy: CircuitPolicy, gaps: list[float]
) -> None:
    """Against an endpoint that always fails, attempts are spaced by the cool-down."""
    circuit = Circuit()
    now = 0.0
    admitted_at: list[float] = []
    for gap in gaps:
        now += gap
        circuit, admitted = admit(circuit, policy, now)
        if admitted:
            admitted_at.append(now)
            circuit = record(circuit, policy, success=False, now=now)
    probes = admitted_at[policy.failures :]
    for earlier, later in itertools.pairwise(probes):
        assert later - earlier >= policy.cool_down - 1e-9  # float sums
    assert len(admitted_at) <= policy.failures + int(now / policy.cool_down) + 1


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=50))
def test_disabled_circuit_never_opens(failures: int, count: int) -> None:
    policy = CircuitPolicy(failures=failures, cool_down=1.0, enabled=False)
    circuit = Circuit()
    for i in range(count):
        circuit, admitted = admit(circuit, policy, float(i))
        assert admitted
        circuit = record(circuit, policy, success=False, now=float(i))
    assert circuit.state is CircuitState.CLOSED


def test_circuit_config_defaults_and_limits() -> None:
    sub = parse_config({"subscriptions": [{"name": "a", "url": "https://a.example/h"}]})
    circuit = sub.subscriptions[0].circuit
    assert (circuit.failures, circuit.cool_down, circuit.enabled) == (5, 10.0, True)
    custom = parse_config(
        {
            "subscriptions": [
                {"name": "a", "url": "https://a.example/h", "circuit": {"cool_down": "2m"}}
            ]
        }
    )
    assert custom.subscriptions[0].circuit.cool_down == 120.0


async def test_open_circuit_sends_only_probes_then_delivers_everything(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    healthy = False
    delivered: set[str] = set()

    def answer(request: Received, _n: int) -> Answer:
        if not healthy:
            return Answer(503)
        delivered.add(request.headers["webhook-id"])
        return Answer(200)

    async with receiving(answer) as receiver:
        cool_down = 1.0
        total = 40
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                crm_subscription(
                    receiver, max_in_flight=4, circuit={"failures": 3, "cool_down": f"{cool_down}s"}
                )
            ],
            # Short retries, and enough of them that no delivery goes dead while probing.
            retry={"schedule": ["50ms"] * 30, "jitter": 0.0},
        )
        alerts: list[tuple[str, str]] = []
        async with running_bridge(config) as bridge:

            async def alert(kind: str, subscription: str, _details: dict[str, object]) -> None:
                alerts.append((kind, subscription))

            bridge.dispatcher.health.alert = alert
            lane = bridge.dispatcher.lanes["crm"]
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        # Not a presence type: repeated device.online would be collapsed.
                        (f"devices/dev-{i % 3}/events", {"type": "session.started", "id": f"c-{i}"})
                        for i in range(total)
                    ]
                )
            await wait_until(lambda: lane.circuit.is_open, timeout=15, message="circuit open")
            opened_at = lane.circuit.opened_at
            assert opened_at is not None
            # Watch the open period for three cool-downs: only probes reach the endpoint.
            await wait_until(
                lambda: time.time() > opened_at + 3.2 * cool_down, timeout=10, interval=0.05
            )
            during = [r.at for r in receiver.requests if r.at > opened_at + 0.05]
            assert 1 <= len(during) <= 4, during
            for earlier, later in itertools.pairwise(during):
                assert later - earlier >= cool_down * 0.9
            assert bridge.metrics.circuit_open.labels("crm")._value.get() == 1
            assert alerts == [("circuit_opened", "crm")]
            # Nothing was dropped while open: everything waits and is delivered on recovery.
            healthy = True
            await wait_until(
                lambda: len(delivered) >= total and not lane.circuit.is_open,
                timeout=20,
                message="every event delivered after recovery",
            )
            assert bridge.metrics.circuit_open.labels("crm")._value.get() == 0
            counts = await bridge.store.counts()
            assert counts.get("dead", 0) == 0, counts
