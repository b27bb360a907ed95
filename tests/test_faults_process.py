"""Faults around a bridge running as a real process: kill -9, SIGTERM, broker restart, outages.

Each test drives ``hookbridge run`` as a subprocess against a private
mosquitto (persistence on) and real aiohttp receivers, and checks the one
promise that matters: every accepted event reaches the subscriber, with
duplicates only where at-least-once allows them, under the same
``webhook-id``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
import pytest

from tests.conftest import bridge_config, crm_subscription
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.sessions import persistent_client
from tests.support.waiting import wait_until

# The recorder writes attempt results in batches of at most this many
# (bridge.delivery.recorder.RECORD_BATCH); a kill loses at most the batch being
# gathered plus the one being written.
RECORD_BATCH = 512


def _events(count: int, *, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"devices/dev-{i % 11}/events", {"type": "session.started", "id": f"k-{i}", "seq": i})
        for i in range(start, start + count)
    ]


def _seqs(receiver: Receiver) -> Counter[int]:
    """The published events that arrived (presence transitions and alerts carry no seq)."""
    return Counter(
        int(e["data"]["seq"]) for e in receiver.events() if e["type"] == "session.started"
    )


def _assert_duplicates_share_ids(receiver: Receiver) -> None:
    """Every body that arrived more than once carried the same webhook-id each time."""
    ids_by_seq: dict[int, set[str]] = {}
    for request in receiver.requests:
        seq = int(request.json()["data"]["seq"])
        ids_by_seq.setdefault(seq, set()).add(request.headers["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_seq.values())


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigkill_mid_burst_of_10000_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    receiver = Receiver(lambda _r, _n: Answer(200, delay=0.002))
    await receiver.start()
    max_in_flight = 16
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver, max_in_flight=max_in_flight)],
    )
    bridge = BridgeProcess(config, tmp_path)
    total = 10_000
    try:
        bridge.start()
        bridge.wait_subscribed()
        with Publisher(mosquitto.port) as device:
            infos = [device.publish(t, p) for t, p in _events(total)]
            # Kill while the burst is both being ingested and being delivered.
            await wait_until(lambda: len(receiver.requests) >= 1500, timeout=60)
            bridge.kill()
            killed_at = len(receiver.requests)
            for info in infos:
                info.wait_for_publish(30)
        assert killed_at < total, "the kill came after the burst: nothing was tested"
        bridge.start()
        await wait_until(
            lambda: len(_seqs(receiver)) >= total, timeout=400, message="all 10,000 delivered"
        )
        assert await bridge.stop() == 0
        seqs = _seqs(receiver)
        assert set(seqs) == set(range(total))
        _assert_duplicates_share_ids(receiver)
        # A delivery is sent again only when its 2xx was not yet recorded at the
        # kill: the attempts in flight (max_in_flight) plus results gathered by
        # the recorder and not yet committed (at most two record batches). A
        # message committed but not yet PUBACKed comes back from the broker with
        # the same device id, so it maps to the same event and is not stored or
        # sent twice.
        duplicates = len(receiver.requests) - total
        assert duplicates <= max_in_flight + 2 * RECORD_BATCH, duplicates
    finally:
        bridge.ensure_stopped()
        await receiver.stop()


@pytest.mark.timeout(400)
async def test_sigterm_under_load_finishes_in_flight_and_restart_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    receiver = Receiver(lambda _r, _n: Answer(200, delay=0.2))
    await receiver.start()
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver, max_in_flight=32)],
    )
    bridge = BridgeProcess(config, tmp_path)
    total = 2000
    try:
        bridge.start()
        bridge.wait_subscribed()
        with Publisher(mosquitto.port) as device:
            device.publish_all(_events(total))
        await wait_until(lambda: len(receiver.requests) >= 200, timeout=30)
        assert await bridge.stop() == 0
        stopped_at = len(receiver.requests)
        assert stopped_at < total
        assert "stopping: no new messages" in bridge.log()
        bridge.start()
        await wait_until(
            lambda: len(_seqs(receiver)) >= total, timeout=120, message="all delivered"
        )
        assert await bridge.stop() == 0
        assert set(_seqs(receiver)) == set(range(total))
        _assert_duplicates_share_ids(receiver)
        # In-flight attempts finished and were recorded before exit: none is sent twice.
        assert len(receiver.requests) == total
    finally:
        bridge.ensure_stopped()
        await receiver.stop()


class PersistentDevice:
    """A device on a persistent MQTT 5 session that republishes its unacked messages."""

    def __init__(self, port: int, client_id: str) -> None:
        def queue_nothing_locally(client: paho.Client) -> None:
            client.max_inflight_messages_set(100)
            client.max_queued_messages_set(0)

        self.client = persistent_client(port, client_id, configure=queue_nothing_locally)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.timeout(400)
async def test_broker_restart_mid_burst_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        mqtt={"reconnect_max": "1s"},
    )
    bridge = BridgeProcess(config, tmp_path)
    total = 3000
    device = PersistentDevice(mosquitto.port, f"device-{tmp_path.name}")
    infos: list[paho.MQTTMessageInfo] = []
    done_publishing = threading.Event()

    def publish_steadily() -> None:
        # A device keeps publishing through the outage; paho queues while down.
        for topic, payload in _events(total):
            infos.append(device.client.publish(topic, json.dumps(payload), qos=1))
            time.sleep(0.0005)
        done_publishing.set()

    publisher = threading.Thread(target=publish_steadily, name="device-publisher")
    try:
        bridge.start()
        bridge.wait_subscribed()
        publisher.start()
        await wait_until(lambda: len(receiver.requests) >= 300, timeout=30)
        mosquitto.stop()
        await wait_until(
            lambda: "disconnected from broker" in bridge.log(), timeout=20, message="bridge saw it"
        )
        mosquitto.start()
        await wait_until(done_publishing.is_set, timeout=60, message="device done publishing")
        await wait_until(
            # Not is_published(): it raises for a message queued while disconnected,
            # which paho still sends once connected again.
            lambda: all(info._published for info in infos),
            timeout=60,
            message="every device message acknowledged by the broker",
        )
        try:
            await wait_until(
                lambda: len(_seqs(receiver)) >= total, timeout=60, message="all delivered"
            )
        except AssertionError as exc:
            missing = sorted(set(range(total)) - set(_seqs(receiver)))
            raise AssertionError(f"{exc}: {len(missing)} missing, {bridge.log()[-3000:]}") from None
        assert set(_seqs(receiver)) == set(range(total))
        _assert_duplicates_share_ids(receiver)
        log = bridge.log()
        assert log.count("connected to broker") >= 2
        assert "broker has no session for us" not in log
    finally:
        publisher.join(60)
        device.close()
        bridge.ensure_stopped()
        await receiver.stop()
        if mosquitto.process is None:
            mosquitto.start()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_receiver_outage_is_ridden_out_without_busy_looping(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The outage lasts 15 s instead of the 60 s of a real incident: that already
    # spans several retry intervals and circuit cool-downs of the shortened
    # schedule below, which is what the behaviour depends on; longer would only
    # slow the suite.
    outage = 15.0
    receiver = Receiver()
    await receiver.start()
    port = receiver.port
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver, circuit={"failures": 5, "cool_down": "2s"})],
        retry={"schedule": ["500ms", "1s", "2s", "4s", "4s", "4s", "4s", "4s"], "jitter": 0.2},
    )
    bridge = BridgeProcess(config, tmp_path)
    total = 5000
    try:
        bridge.start()
        bridge.wait_subscribed()
        assert bridge.process is not None
        proc = psutil.Process(bridge.process.pid)
        await receiver.stop()  # port closed: connection refused
        cpu_before = sum(proc.cpu_times()[:2])
        down_since = time.monotonic()
        with Publisher(mosquitto.port) as device:
            device.publish_all(_events(total))
        await wait_until(
            lambda: time.monotonic() - down_since >= outage, timeout=outage + 5, interval=0.1
        )
        cpu_used = sum(proc.cpu_times()[:2]) - cpu_before
        wall = time.monotonic() - down_since
        # Ingesting 5,000 events costs some CPU; retrying must not add a busy loop.
        assert cpu_used < 0.3 * wall, f"{cpu_used:.2f} CPU s in {wall:.1f} s of outage"
        back = Receiver()
        await back.start(port=port)
        try:
            try:
                await wait_until(
                    lambda: len(_seqs(back)) >= total, timeout=60, message="all delivered after"
                )
            except AssertionError as exc:
                got = len(_seqs(back))
                raise AssertionError(f"{exc}: {got} delivered; {bridge.log()[-3000:]}") from None
            assert set(_seqs(back)) == set(range(total))
        finally:
            assert await bridge.stop() == 0
            await back.stop()
        assert "circuit open" in bridge.log()
    finally:
        bridge.ensure_stopped()
