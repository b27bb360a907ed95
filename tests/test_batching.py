"""Batching through a running bridge, a real broker and real receivers.

A batch subscription's POSTs verify as Standard Webhooks (signed with the
batch id) and hold every event once; a failed batch comes back whole under the
same id, and the admin API and the CLI show each delivery's batch; an ordered
batch subscription keeps each device's order. Both on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.admin import TOKEN, admin_client, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver, receiving
from tests.support.waiting import wait_until
from tests.test_admin_cli import hookbridge


def _verified(request: Received) -> dict[str, Any]:
    """The batch body, once its signature verifies (raises otherwise)."""
    body = Webhook(SECRET).verify(request.body, request.headers)
    assert isinstance(body, dict)
    return body


def _event_ids(receiver: Receiver) -> list[str]:
    return [e["id"] for r in receiver.requests for e in json.loads(r.body)["events"]]


def _messages(devices: int, events: int) -> list[tuple[str, bytes | str | dict[str, Any]]]:
    """Event n of every device, then event n + 1 (interleaved)."""
    return [
        (f"devices/bat-{d}/events", {"type": "session.started", "id": f"{d}-{n}", "seq": n})
        for n in range(events)
        for d in range(devices)
    ]


async def test_batches_verify_and_hold_every_event_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    batched, small = Receiver(), Receiver()
    await batched.start()
    await small.start()
    try:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {
                    "name": "batched",
                    "url": batched.url,
                    "secret": SECRET,
                    "batch": {"max_events": 10, "max_wait": "200ms"},
                },
                {
                    "name": "small",
                    "url": small.url,
                    "secret": SECRET,
                    "format": "cloudevents",
                    "batch": {"max_events": 50, "max_wait": "200ms", "max_bytes": "1KB"},
                },
            ],
            presence={"enabled": False},
        )
        total = 3 * 12
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(3, 12))
            for receiver in (batched, small):
                await wait_until(
                    lambda r=receiver: len(set(_event_ids(r))) >= total,  # type: ignore[misc]
                    timeout=30,
                    message="every event delivered in batches",
                )
        for receiver, limit in ((batched, 10), (small, 50)):
            ids = _event_ids(receiver)
            assert len(ids) == total
            assert len(set(ids)) == total  # each event exactly once
            for request in receiver.requests:
                body = _verified(request)
                assert body["type"] == "batch"
                assert body["id"] == request.headers["webhook-id"]
                assert body["id"].startswith("bat_")
                assert 1 <= len(body["events"]) <= limit
                assert request.headers["hookbridge-batch-size"] == str(len(body["events"]))
        assert len(batched.requests) < total  # batched, not one POST per event
        for request in small.requests:
            events = json.loads(request.body)["events"]
            assert len(request.body) <= 1024 or len(events) == 1
            assert all(e["specversion"] == "1.0" for e in events)
    finally:
        await batched.stop()
        await small.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``store:`` override of a test's config: its own SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return {}
    return {"url": request.getfixturevalue("postgres").schema_url("batch")}


async def test_a_failed_batch_is_retried_whole_under_its_id(
    mosquitto: Mosquitto, tmp_path: Path, store: dict[str, str]
) -> None:
    async with receiving(lambda _r, n: Answer(500 if n == 0 else 200)) as receiver:
        config = admin_config(
            mosquitto,
            tmp_path,
            [
                {
                    "name": "retried",
                    "url": receiver.url,
                    "secret": SECRET,
                    "batch": {"max_events": 8, "max_wait": "1s"},
                }
            ],
            retry={"schedule": ["50ms"] * 5, "jitter": 0.0},
            presence={"enabled": False},
            store=store,
        )
        async with running_bridge(config), admin_client(config) as admin:
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(2, 4))
            await wait_until(
                lambda: len(set(_event_ids(receiver))) >= 8 and len(receiver.requests) >= 2,
                timeout=30,
                message="the failed batch sent again",
            )
            first = receiver.requests[0]
            again = [
                r
                for r in receiver.requests[1:]
                if r.headers["webhook-id"] == first.headers["webhook-id"]
            ]
            assert len(again) == 1
            failed, retried = _verified(first), _verified(again[0])
            assert failed["id"] == retried["id"]
            assert len(failed["events"]) > 1
            assert [e["id"] for e in failed["events"]] == [e["id"] for e in retried["events"]]
            assert again[0].headers["hookbridge-attempt"] == "2"
            # Every event delivered once after the retry: none lost, none in two batches.
            delivered = [
                e["id"] for r in receiver.requests[1:] for e in json.loads(r.body)["events"]
            ]
            assert sorted(delivered) == sorted(set(delivered))
            assert len(delivered) == 8

            # An operator's retry of one delivery of that batch sends it in a new batch.
            # Results are recorded in the store shortly after the receiver's answer.
            delivered_rows: list[dict[str, Any]] = []

            async def recorded() -> bool:
                status, page = await admin.get("/api/deliveries", params={"status": "delivered"})
                assert status == 200
                delivered_rows[:] = page["deliveries"]
                return bool(delivered_rows)

            await wait_until(recorded, timeout=30, message="the batch's results recorded")
            sent_in = {r.headers["webhook-id"] for r in receiver.requests[1:]}
            assert all(row["batch_id"] in sent_in for row in delivered_rows), delivered_rows
            chosen = delivered_rows[0]
            status, shown = await admin.get(f"/api/deliveries/{chosen['id']}")
            assert status == 200
            assert shown["batch_id"] == chosen["batch_id"]
            flags = ["--url", api_url(config), "--token", TOKEN]
            code, out, err = await hookbridge("deliveries", "show", chosen["id"], *flags)
            assert code == 0, err
            assert f"batch         {chosen['batch_id']}" in out
            sent_before = len(receiver.requests)
            status, _ = await admin.post(f"/api/deliveries/{chosen['id']}/retry")
            assert status in (200, 202)
            await wait_until(
                lambda: len(receiver.requests) > sent_before,
                timeout=30,
                message="the retried delivery sent",
            )
            resent = _verified(receiver.requests[sent_before])

            async def moved() -> bool:
                status, shown = await admin.get(f"/api/deliveries/{chosen['id']}")
                return status == 200 and shown["batch_id"] == resent["id"]

            await wait_until(moved, timeout=30, message="the retried delivery in its new batch")
        assert resent["id"] != retried["id"]
        assert [e["id"] for e in resent["events"]] == [chosen["event_id"]]


async def test_an_ordered_batch_subscription_keeps_each_devices_order(
    mosquitto: Mosquitto, tmp_path: Path, store: dict[str, str]
) -> None:
    rng = random.Random(11)
    statuses: list[int] = []

    def flaky(_request: Received, _n: int) -> Answer:
        status = 500 if rng.random() < 0.3 else 200
        statuses.append(status)
        return Answer(status)

    async with receiving(flaky) as receiver:
        devices, events = 6, 12
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {
                    "name": "ordered",
                    "url": receiver.url,
                    "secret": SECRET,
                    "ordered": True,
                    "batch": {"max_events": 4, "max_wait": "50ms"},
                }
            ],
            retry={"schedule": ["20ms"] * 40, "jitter": 0.0},
            presence={"enabled": False},
            store=store,
        )

        def first_successes() -> dict[str, list[int]]:
            done: set[str] = set()
            order: dict[str, list[int]] = {}
            for request, status in zip(receiver.requests, statuses, strict=False):
                if status != 200:
                    continue
                for event in json.loads(request.body)["events"]:
                    if event["id"] not in done:
                        done.add(event["id"])
                        order.setdefault(event["data"]["device_id"], []).append(
                            event["data"]["seq"]
                        )
            return order

        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(devices, events))
            await wait_until(
                lambda: sum(map(len, first_successes().values())) >= devices * events,
                timeout=60,
                message="every event delivered to the ordered batch subscription",
            )
        order = first_successes()
        assert sorted(order) == sorted(f"bat-{d}" for d in range(devices))
        for device_id, seqs in order.items():
            assert seqs == list(range(events)), device_id
        assert statuses.count(500) > 0  # the receiver really failed
        sizes = [len(_verified(request)["events"]) for request in receiver.requests]
        assert max(sizes) <= 4
        assert max(sizes) > 1  # batched, not one POST per event
