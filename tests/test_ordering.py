"""Ordered subscriptions: FIFO per device through a real broker and a failing receiver."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from bridge.store.rows import Delivery
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver, receiving
from tests.support.waiting import wait_until

DEVICES = 20
EVENTS = 15


def _first_successes(receiver: Receiver, statuses: list[int]) -> dict[str, list[int]]:
    """Per device, the seq of each event at its first successful delivery, in arrival order."""
    done: set[str] = set()
    order: dict[str, list[int]] = {}
    for request, status in zip(receiver.requests, statuses, strict=False):
        event = request.json()
        if status != 200 or event["id"] in done:
            continue
        done.add(event["id"])
        order.setdefault(event["data"]["device_id"], []).append(event["data"]["seq"])
    return order


async def test_each_device_in_order_despite_failures_and_unordered_not_slowed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rng = random.Random(7)
    statuses: list[int] = []

    def flaky(_request: Received, _n: int) -> Answer:
        status = 500 if rng.random() < 0.3 else 200
        statuses.append(status)
        return Answer(status)

    async with receiving(flaky) as ordered, receiving() as plain:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {"name": "ordered", "url": ordered.url, "secret": SECRET, "ordered": True},
                {"name": "plain", "url": plain.url, "secret": SECRET},
            ],
            retry={"schedule": ["20ms"] * 30, "jitter": 0.0},
            presence={"enabled": False},
        )
        total = DEVICES * EVENTS
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                # Interleaved: event n of every device, then event n + 1.
                device.publish_all(
                    [
                        (
                            f"devices/ord-{d}/events",
                            {"type": "session.started", "id": f"{d}-{n}", "seq": n},
                        )
                        for n in range(EVENTS)
                        for d in range(DEVICES)
                    ]
                )
            await wait_until(lambda: len(plain.unique_ids()) >= total, timeout=30)
            plain_done = plain.requests[-1].at
            await wait_until(
                lambda: sum(map(len, _first_successes(ordered, statuses).values())) >= total,
                timeout=60,
                message="every event delivered to the ordered subscription",
            )
            ordered_done = ordered.requests[-1].at
        order = _first_successes(ordered, statuses)
        assert sorted(order) == sorted(f"ord-{d}" for d in range(DEVICES))
        for device_id, seqs in order.items():
            assert seqs == list(range(EVENTS)), device_id
        assert statuses.count(500) > 0.15 * total  # the receiver really failed
        # The unordered lane never waits for the ordered one's retries.
        assert plain_done < ordered_done
        assert len(plain.unique_ids()) >= total


async def test_a_device_with_nothing_pending_goes_from_memory_the_rest_wait_their_turn(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    def answer(request: Received, _n: int) -> Answer:
        # The busy device's first answer is slow: its later events are stored meanwhile.
        event = request.json()
        slow = "busy" in event["source"] and event["data"]["seq"] == 0
        return Answer(200, delay=0.5 if slow else 0.0)

    async with receiving(answer) as receiver:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [{"name": "ordered", "url": receiver.url, "secret": SECRET, "ordered": True}],
            presence={"enabled": False},
        )
        async with running_bridge(config) as bridge:
            claimed: list[str] = []
            claim_due = bridge.store.claim_due

            async def claims_seen(*args: Any, **kwargs: Any) -> list[Delivery]:
                found = await claim_due(*args, **kwargs)
                claimed.extend(delivery.event_id for delivery in found)
                return found

            bridge.store.claim_due = claims_seen  # type: ignore[method-assign]
            with Publisher(mosquitto.port) as device:
                # Each device's queue is empty when its event is stored: no claim needed.
                for n in range(5):
                    device.publish(
                        f"devices/idle-{n}/events",
                        {"type": "session.started", "id": f"idle-{n}", "seq": 0},
                    )
                    await wait_until(lambda n=n: len(receiver.unique_ids()) > n)
                assert claimed == []
                # A burst of one device: its first event goes from memory, the others
                # wait behind it in the store and are claimed one by one, in order.
                device.publish_all(
                    [
                        (
                            "devices/busy/events",
                            {"type": "session.started", "id": f"busy-{n}", "seq": n},
                        )
                        for n in range(10)
                    ]
                )
                await wait_until(lambda: len(receiver.unique_ids()) >= 15, timeout=30)
        busy = [r.json()["data"]["seq"] for r in receiver.requests if "busy" in r.json()["source"]]
        assert busy == list(range(10))
        assert claimed  # the later ones of the burst came through the claim
