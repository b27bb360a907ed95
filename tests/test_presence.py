"""Presence: the pure state machine (hypothesis) and the behaviour through a real broker."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge.core.presence import (
    FIRST_SEEN,
    HEARTBEAT_TIMEOUT,
    SEEN_AGAIN,
    Observation,
    Presence,
    PresenceState,
    decide,
)
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

ON, OFF = Presence.ONLINE, Presence.OFFLINE
AFTER = 90.0

# -- the pure state machine ----------------------------------------------------------------

# One step of a device's life: time passes, then a message (or the scanner's check).
_steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=200, allow_nan=False),
        st.sampled_from(["event", "online", "offline", "tick"]),
        st.booleans(),  # retained
    ),
    max_size=40,
)


def _run(
    steps: list[tuple[float, str, bool]], *, first_seen: bool = False
) -> tuple[list[Presence], PresenceState | None]:
    """What a receiver sees (the presence states delivered, in order) and the final state."""
    state: PresenceState | None = None
    seen: list[Presence] = []
    now = 1_800_000_000.0
    for gap, kind, retained in steps:
        now += gap
        if kind == "tick":
            decision = decide(state, None, now, AFTER)
        else:
            says = None if kind == "event" else Presence(kind)
            observation = Observation("dev-1", now, says, None, retained)
            decision = decide(state, observation, now, AFTER, first_seen=first_seen)
        seen.extend(t.state for t in decision.emit)
        if kind in {"online", "offline"} and decision.keep_event:
            seen.append(Presence(kind))
        if decision.state is not None and state is not None:
            assert decision.state.last_seen >= state.last_seen
        state = decision.state
    return seen, state


@given(_steps)
def test_a_receiver_sees_each_transition_once(steps: list[tuple[float, str, bool]]) -> None:
    seen, state = _run(steps)
    assert all(a != b for a, b in itertools.pairwise(seen)), seen
    if seen:
        assert state is not None
        assert state.state is seen[-1]


@given(_steps)
def test_announcing_first_sight_keeps_each_transition_once(
    steps: list[tuple[float, str, bool]],
) -> None:
    seen, state = _run(steps, first_seen=True)
    assert all(a != b for a, b in itertools.pairwise(seen)), seen
    first_live = next(((kind, retained) for _, kind, retained in steps if kind != "tick"), None)
    if first_live == ("event", False):  # a device first seen through a live event
        assert seen[:1] == [ON]
    if seen:
        assert state is not None
        assert state.state is seen[-1]


def test_a_device_first_seen_through_an_event_is_announced_online() -> None:
    first = decide(None, Observation("d", 5.0), 5.0, AFTER, first_seen=True)
    assert [(t.state, t.reason, t.changed_at) for t in first.emit] == [(ON, FIRST_SEEN, 5.0)]
    assert first.keep_event
    assert first.state is not None and first.state.reason == FIRST_SEEN
    quiet = decide(None, Observation("d", 5.0), 5.0, AFTER)  # announce_first_seen: false
    assert quiet.emit == ()
    retained = decide(None, Observation("d", 5.0, retained=True), 5.0, AFTER, first_seen=True)
    assert retained.emit == ()  # the broker's memory is not a sign of life
    said = decide(None, Observation("d", 5.0, ON), 5.0, AFTER, first_seen=True)
    assert said.emit == () and said.keep_event  # a live online is its own announcement


@given(_steps)
def test_timeouts_only_after_silence(steps: list[tuple[float, str, bool]]) -> None:
    state: PresenceState | None = None
    now = 1_800_000_000.0
    for gap, kind, retained in steps:
        now += gap
        says = None if kind in {"event", "tick"} else Presence(kind)
        observation = None if kind == "tick" else Observation("d", now, says, None, retained)
        decision = decide(state, observation, now, AFTER)
        for transition in decision.emit:
            if transition.reason == HEARTBEAT_TIMEOUT:
                assert state is not None
                assert state.state is ON
                assert now - state.last_seen > AFTER
                assert transition.changed_at == state.last_seen + AFTER
            else:
                # Back after being offline, or a device's first live sign of life.
                first = state is None and transition.reason == FIRST_SEEN
                assert transition.reason == SEEN_AGAIN or first
                assert observation is not None
                assert observation.says is None
        state = decision.state


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=200, allow_nan=False),
            st.sampled_from(["event", "online", "offline", "tick"]),
            st.sampled_from([None, 5.0, 30.0]),  # a heartbeat the message announces
        ),
        max_size=40,
    ),
    st.sampled_from([None, AFTER]),
)
def test_a_timeout_is_the_announced_one_else_the_default(
    steps: list[tuple[float, str, float | None]], default: float | None
) -> None:
    state: PresenceState | None = None
    announced: float | None = None  # what the device said last
    now = 1_800_000_000.0
    for gap, kind, heartbeat in steps:
        now += gap
        if kind == "online" or (heartbeat is not None and kind != "tick"):
            announced = heartbeat
        says = None if kind in {"event", "tick"} else Presence(kind)
        observation = (
            None if kind == "tick" else Observation("d", now, says, None, heartbeat=heartbeat)
        )
        decision = decide(state, observation, now, default)
        timeout = announced if announced is not None else default
        for transition in decision.emit:
            if transition.reason == HEARTBEAT_TIMEOUT:
                assert state is not None
                assert timeout is not None, "a device with no timeout never times out"
                assert transition.changed_at == state.last_seen + timeout
        if decision.state is not None:
            assert decision.state.heartbeat == announced
        if kind == "tick" and state is not None and state.state is ON and timeout is not None:
            assert bool(decision.emit) is (now - state.last_seen > timeout)
        state = decision.state


@given(st.sampled_from([ON, OFF]), st.sampled_from([ON, OFF]))
def test_retained_status_sets_start_and_only_contradictions_pass(
    stored: Presence, retained: Presence
) -> None:
    fresh = decide(None, Observation("d", 10.0, retained, None, retained=True), 10.0, AFTER)
    assert fresh.state is not None
    assert (fresh.state.state, fresh.keep_event, fresh.emit) == (retained, False, ())
    known = PresenceState("d", stored, 5.0, 5.0)
    after_restart = decide(known, Observation("d", 10.0, retained, None, True), 10.0, AFTER)
    assert after_restart.keep_event is (stored != retained)


def test_last_will_after_a_timeout_is_not_sent_twice() -> None:
    start = decide(None, Observation("d", 0.0), 0.0, AFTER)
    timed_out = decide(start.state, None, 100.0, AFTER)
    assert [(t.state, t.reason, t.changed_at) for t in timed_out.emit] == [
        (OFF, HEARTBEAT_TIMEOUT, AFTER)
    ]
    will = decide(timed_out.state, Observation("d", 120.0, OFF, "connection_lost"), 120.0, AFTER)
    assert not will.keep_event
    assert will.emit == ()
    back = decide(will.state, Observation("d", 130.0), 130.0, AFTER)
    assert [(t.state, t.reason) for t in back.emit] == [(ON, SEEN_AGAIN)]
    assert back.keep_event


def test_without_an_announced_timeout_a_device_never_times_out() -> None:
    start = decide(None, Observation("d", 0.0, ON, None, retained=True), 0.0, None)
    assert start.state is not None
    assert start.state.heartbeat is None
    later = decide(start.state, None, 1e9, None)
    assert later.emit == ()
    assert later.state == start.state


def test_an_announced_timeout_is_kept_until_a_new_online_clears_it() -> None:
    start = decide(None, Observation("d", 0.0, ON, heartbeat=30.0), 0.0, None)
    seen = decide(start.state, Observation("d", 10.0), 10.0, None)
    assert seen.state is not None
    assert seen.state.heartbeat == 30.0
    # An older retained status handed over again does not take the heartbeat away.
    retained = decide(seen.state, Observation("d", 12.0, ON, retained=True), 12.0, None)
    assert retained.state == seen.state
    assert decide(seen.state, None, 40.0, None).emit == ()
    gone = decide(seen.state, None, 40.1, None)
    assert [(t.state, t.reason, t.changed_at) for t in gone.emit] == [
        (OFF, HEARTBEAT_TIMEOUT, 40.0)
    ]
    # The device reconnects without a heartbeat: from now on only its Last Will says offline.
    back = decide(gone.state, Observation("d", 50.0, ON), 50.0, None)
    assert back.state is not None
    assert back.state.heartbeat is None
    assert decide(back.state, None, 1e9, None).emit == ()
    # The configured default applies to it when every device times out.
    assert [t.changed_at for t in decide(back.state, None, 1e9, AFTER).emit] == [50.0 + AFTER]


# -- through a real broker ----------------------------------------------------------------


def _config(
    mosquitto: Mosquitto,
    tmp_path: Path,
    receiver: Receiver,
    offline_after: str,
    timeout_for: str = "all",
) -> dict[str, Any]:
    sub = {"name": "crm", "url": receiver.url, "secret": SECRET, "events": ["device.*"]}
    presence = {"offline_after": offline_after, "timeout_for": timeout_for}
    return bridge_config(mosquitto, tmp_path, [sub], presence=presence)


def _presence(receiver: Receiver, device: str) -> list[tuple[str, Any]]:
    return [
        (e["type"], e["data"].get("reason"))
        for e in receiver.events()
        if e["data"]["device_id"] == device
    ]


def _kill(device: Publisher) -> None:
    """Drop the TCP connection without DISCONNECT: the broker publishes the Last Will."""
    device.client.loop_stop()
    sock = device.client.socket()
    assert sock is not None
    sock.close()


async def test_last_will_gives_connection_lost(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with running_bridge(_config(mosquitto, tmp_path, receiver, "1h")):
        device = Publisher(mosquitto.port, will=("devices/lwt-1/status", b"offline"))
        device.__enter__()
        device.publish("devices/lwt-1/status", "online", retain=True).wait_for_publish(10)
        await wait_until(lambda: len(_presence(receiver, "lwt-1")) >= 1, timeout=10)
        _kill(device)
        await wait_until(lambda: len(_presence(receiver, "lwt-1")) >= 2, timeout=15)
    assert _presence(receiver, "lwt-1") == [
        ("device.online", None),
        ("device.offline", "connection_lost"),
    ]


async def test_silent_device_times_out_and_comes_back(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = _config(mosquitto, tmp_path, receiver, "300ms")
    config["subscriptions"][0]["events"] = ["*"]
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all([("devices/quiet-1/events", {"type": "session.started"})])
            await wait_until(lambda: len(_presence(receiver, "quiet-1")) >= 2, timeout=10)
            stamps = [e["timestamp"] for e in receiver.events()]
            # Its Last Will arrives after the timeout already said so: not sent again.
            device.publish_all([("devices/quiet-1/status", "offline")])
            await wait_until(
                lambda: bridge.metrics.events_received.labels("device.offline")._value.get() >= 1,
                timeout=10,
            )
            device.publish_all([("devices/quiet-1/events", {"type": "session.ended"})])
            await wait_until(lambda: len(_presence(receiver, "quiet-1")) >= 4, timeout=10)
    assert _presence(receiver, "quiet-1") == [
        ("session.started", None),
        ("device.offline", "heartbeat_timeout"),
        ("device.online", "seen_again"),
        ("session.ended", None),
    ]
    assert len(stamps) == 2
    offline = receiver.events()[1]
    assert offline["data"]["last_seen"] <= offline["timestamp"]


async def test_flapping_device_sends_each_transition_once(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    states = ["online", "online", "offline", "offline", "online", "offline", "offline", "online"]
    async with running_bridge(_config(mosquitto, tmp_path, receiver, "1h")) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all([("devices/flap-1/status", s) for s in states])

            async def all_seen() -> bool:
                state = await bridge.store.get_presence("flap-1")
                counts = bridge.metrics.events_received
                total = sum(
                    counts.labels(t)._value.get() for t in ("device.online", "device.offline")
                )
                return state is not None and total >= len(states)

            await wait_until(all_seen, timeout=10)
            await wait_until(lambda: len(_presence(receiver, "flap-1")) >= 5, timeout=10)
    assert [t for t, _ in _presence(receiver, "flap-1")] == [
        "device.online",
        "device.offline",
        "device.online",
        "device.offline",
        "device.online",
    ]


async def test_restart_keeps_state_and_waits_before_timeouts(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = _config(mosquitto, tmp_path, receiver, "1s")
    with Publisher(mosquitto.port) as device:
        async with running_bridge(config) as bridge:
            device.publish_all([("devices/rs-1/status", "online")])
            device.client.publish("devices/rs-1/status", "online", qos=1, retain=True)
            await wait_until(lambda: len(_presence(receiver, "rs-1")) >= 1, timeout=10)

            async def known() -> bool:
                return await bridge.store.get_presence("rs-1") is not None

            await wait_until(known, timeout=10)
        stopped = time.time()
        # The device is silent for longer than offline_after while the bridge is down.
        await wait_until(lambda: time.time() > stopped + 1.2, timeout=5)
        async with running_bridge(config) as bridge:
            restarted = time.time()
            # The broker hands over its retained "online" again: the same state, not news.
            await wait_until(lambda: len(_presence(receiver, "rs-1")) >= 2, timeout=10)
            timed_out = receiver.requests[-1].at
            state = await bridge.store.get_presence("rs-1")
    assert _presence(receiver, "rs-1") == [
        ("device.online", None),
        ("device.offline", "heartbeat_timeout"),
    ]
    # No storm at startup: the timeout came only after one offline_after.
    assert timed_out >= restarted + 0.95
    assert state is not None
    assert state.state is OFF


def _delivered(receiver: Receiver, device: str, event_type: str) -> int:
    return sum(1 for t, _ in _presence(receiver, device) if t == event_type)


async def test_last_will_device_stays_online_past_the_timeout(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    """The default: a device that signals presence with a retained status and a Last
    Will is online until its Last Will says otherwise, however long it is silent."""
    config = _config(mosquitto, tmp_path, receiver, "300ms", timeout_for="announced")
    async with running_bridge(config) as bridge:
        device = Publisher(mosquitto.port, will=("devices/will-1/status", b"offline"))
        device.__enter__()
        device.publish("devices/will-1/status", "online", retain=True).wait_for_publish(10)
        await wait_until(lambda: _delivered(receiver, "will-1", "device.online") == 1, timeout=10)
        # A witness that announces a heartbeat and then stays silent: once it has timed
        # out, the scanner has judged will-1 too (silent longer, same offline_after).
        with Publisher(mosquitto.port) as witness:
            witness.publish_all(
                [("devices/beat-1/status", {"status": "online", "heartbeat_interval": 0.1})]
            )
            await wait_until(
                lambda: _delivered(receiver, "beat-1", "device.offline") == 1, timeout=15
            )
        assert _presence(receiver, "will-1") == [("device.online", None)]
        state = await bridge.store.get_presence("will-1")
        assert state is not None
        assert state.state is ON
        _kill(device)
        await wait_until(lambda: _delivered(receiver, "will-1", "device.offline") == 1, timeout=15)
    assert _presence(receiver, "will-1") == [
        ("device.online", None),
        ("device.offline", "connection_lost"),
    ]


async def test_announced_heartbeat_goes_offline_when_silent(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = _config(mosquitto, tmp_path, receiver, "300ms", timeout_for="announced")
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            # Three missed beats of 0.2 s: offline after 0.6 s of silence.
            device.publish_all(
                [("devices/beat-2/status", {"state": "online", "heartbeat_interval": 0.2})]
            )
            await wait_until(lambda: len(_presence(receiver, "beat-2")) >= 2, timeout=15)
    assert _presence(receiver, "beat-2") == [
        ("device.online", None),
        ("device.offline", "heartbeat_timeout"),
    ]
    online, offline = receiver.events()
    assert online["data"]["heartbeat_interval"] == 0.2
    seen = datetime.fromisoformat(offline["data"]["last_seen"])
    gone = datetime.fromisoformat(offline["timestamp"])
    assert abs((gone - seen).total_seconds() - 0.6) < 0.01


async def test_a_restarted_bridge_process_does_not_flap_presence(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    """SIGTERM and start again, past the timeout: the retained ``online`` the broker
    hands over again is the state already stored, so receivers hear nothing."""
    config = _config(mosquitto, tmp_path, receiver, "300ms", timeout_for="announced")
    config["subscriptions"][0]["events"] = ["*"]
    bridge = BridgeProcess(config, tmp_path)
    device = Publisher(mosquitto.port, will=("devices/keep-1/status", b"offline"))
    device.__enter__()
    try:
        await asyncio.to_thread(bridge.start)
        await asyncio.to_thread(bridge.wait_subscribed)
        device.publish("devices/keep-1/status", "online", retain=True).wait_for_publish(10)
        await wait_until(lambda: len(_presence(receiver, "keep-1")) >= 1, timeout=15)
        assert await asyncio.to_thread(bridge.terminate) == 0
        down = time.time()
        # Down for longer than offline_after.
        await wait_until(lambda: time.time() > down + 0.6, timeout=5)
        await asyncio.to_thread(bridge.start)
        await asyncio.to_thread(bridge.wait_subscribed)
        # The broker hands the retained copy over before anything published now: a
        # marker event from the device, once delivered, shows it was processed.
        device.publish_all([("devices/keep-1/events", {"type": "session.started"})])
        await wait_until(lambda: len(_presence(receiver, "keep-1")) >= 2, timeout=15)
        # A witness with a heartbeat times out: the scanner ran, past its start-up grace.
        with Publisher(mosquitto.port) as witness:
            witness.publish_all(
                [("devices/beat-3/status", {"state": "online", "heartbeat_interval": 0.1})]
            )
            await wait_until(
                lambda: _delivered(receiver, "beat-3", "device.offline") == 1, timeout=15
            )
        assert await asyncio.to_thread(bridge.terminate) == 0
    finally:
        bridge.ensure_stopped()
        device.__exit__()
    assert _presence(receiver, "keep-1") == [("device.online", None), ("session.started", None)]
