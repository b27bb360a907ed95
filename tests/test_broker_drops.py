"""The broker's losses made visible: mosquitto's dropped-messages counter, watched.

A real mosquitto whose queue for an offline client is small (10) and that
publishes ``$SYS`` every second. The bridge is stopped during a burst, so the
broker drops most of it for the bridge's session. Once the bridge is back it
reads the counter, compares it with the value it kept in its store before it
stopped, and raises a ``bridge.broker_dropped`` alert and the metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.ingest.drops import new_drops, parse_counter
from tests.conftest import bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import wait_until

SMALL_QUEUE = "max_queued_messages 10\nsys_interval 1"


def test_growth_since_the_kept_value_is_what_is_reported() -> None:
    assert new_drops(None, 50) == (0, False)  # a starting point: when is unknown
    assert new_drops(50, 50) == (0, False)
    assert new_drops(50, 80) == (30, False)
    assert new_drops(80, 12) == (12, True)  # the broker restarted: counts from zero
    assert [parse_counter(p) for p in (b"42", b" 7\n", b"", b"-1", b"1e3", b"x")] == [
        42,
        7,
        None,
        None,
        None,
        None,
    ]


def _config(broker: Mosquitto, tmp_path: Path, ops: Receiver) -> dict[str, Any]:
    subscriptions = [{"name": "ops", "url": ops.url, "events": ["bridge.*"]}]
    return bridge_config(broker, tmp_path, subscriptions, presence={"enabled": False})


async def test_drops_while_the_bridge_was_down_are_alerted_at_its_return(
    tmp_path: Path,
) -> None:
    with running_mosquitto(tmp_path) as broker:
        broker.extra = SMALL_QUEUE
        broker.restart()
        async with receiving() as ops:
            config = _config(broker, tmp_path, ops)
            async with running_bridge(config) as bridge:
                assert bridge.drops is not None
                drops = bridge.drops
                await wait_until(lambda: drops.checked >= 1, message="the counter kept")
            # The bridge is away: its persistent session queues 10, the rest is dropped.
            burst = [
                (f"devices/dev-{n % 5}/events", {"type": "session.started", "id": f"b-{n}"})
                for n in range(200)
            ]
            with Publisher(broker.port) as device:
                device.publish_all(burst)
            async with running_bridge(config) as bridge:
                await wait_until(
                    lambda: any(e["type"] == "bridge.broker_dropped" for e in ops.events()),
                    timeout=15,
                    message="the broker_dropped alert",
                )
                metric = bridge.metrics.registry.get_sample_value(
                    "hookbridge_broker_dropped_messages_total"
                )
        (alert,) = [e for e in ops.events() if e["type"] == "bridge.broker_dropped"]
        data = alert["data"]
        assert data["reason"] == "dropped"
        assert data["dropped"] >= 150, data
        assert data["total"] >= data["dropped"]
        assert data["broker"] == broker.url
        assert data["counter"] == "$SYS/broker/publish/messages/dropped"
        assert "broker-wide" in data["scope"]
        assert metric == data["dropped"]


async def test_a_broker_that_publishes_no_counter_leaves_the_watch_silent(
    tmp_path: Path,
) -> None:
    with running_mosquitto(tmp_path) as broker:
        broker.extra = "sys_interval 0"  # no $SYS at all
        broker.restart()
        async with receiving() as ops:
            async with running_bridge(_config(broker, tmp_path, ops)) as bridge:
                assert bridge.drops is not None
                with Publisher(broker.port) as device:
                    device.publish_all([("devices/d/events", {"type": "session.started"})])
                await wait_until(lambda: bridge.metrics.messages_received._value.get() >= 1)
                assert bridge.drops.checked == 0
            assert ops.events() == []
