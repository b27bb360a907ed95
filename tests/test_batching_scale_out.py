"""Batching with two bridge instances on one PostgreSQL store.

A batch id is the POST's ``webhook-id``, on which receivers deduplicate, so it
must never name two different sets of events. Here every batch fails once,
then the receiver answers 200: the retries are claimed from the store by both
instances at once (a shared subscription split the messages between them), in
claims of a lane's room (260 with ``max_in_flight: 1``) that cut through
batches of 50. Whatever part of a batch an instance gets, no ``webhook-id`` is
seen with two different event sets, and every event is delivered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import SECRET, bridge_config
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresDatabase
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver, receiving
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOTAL = 1_200


def _config(
    mosquitto: Mosquitto, tmp_path: Path, url: str, receiver: Receiver, name: str
) -> dict[str, Any]:
    return bridge_config(
        mosquitto,
        tmp_path,
        [
            {
                "name": "batched",
                "url": receiver.url,
                "secret": SECRET,
                "max_in_flight": 1,
                # Failing is the point here: the circuit would only slow the retries.
                "circuit": {"enabled": False},
                "batch": {"max_events": 50, "max_wait": "100ms"},
            }
        ],
        mqtt={"client_id": name, "shared_group": "hb-batch", "protocol": "5"},
        store={"url": url},
        retry={"schedule": ["300ms"] * 20, "jitter": 0.0},
        presence={"enabled": False},
    )


async def test_no_batch_id_names_two_event_sets_across_instances(
    mosquitto: Mosquitto, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    seen: set[str] = set()
    delivered: set[str] = set()
    failing = True

    def once_failing(request: Received, _n: int) -> Answer:
        nonlocal failing
        ids = [e["id"] for e in json.loads(request.body)["events"]]
        seen.update(ids)
        if not failing:
            delivered.update(ids)
            return Answer(200)
        failing = len(seen) < TOTAL  # every event has failed once: from now on, 200
        return Answer(500)

    async with receiving(once_failing) as receiver:
        url = postgres.schema_url("batchscale")
        with (
            started_bridge(
                _config(mosquitto, tmp_path, url, receiver, "hb-bat-a"), tmp_path, "a"
            ) as first,
            started_bridge(
                _config(mosquitto, tmp_path, url, receiver, "hb-bat-b"), tmp_path, "b"
            ) as second,
        ):
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        (f"devices/bs-{i % 40}/events", {"type": "session.started", "id": f"b-{i}"})
                        for i in range(TOTAL)
                    ],
                    timeout=120,
                )
            try:
                await wait_until(
                    lambda: len(delivered) >= TOTAL,
                    timeout=180,
                    interval=0.2,
                    message="every event delivered after its batch failed once",
                )
            except AssertionError:
                state = (
                    f"seen {len(seen)} delivered {len(delivered)} posts {len(receiver.requests)}"
                )
                logs = f"{first.log()[-2000:]}\n{second.log()[-2000:]}"
                raise AssertionError(f"{state}\n{logs}") from None
            sets: dict[str, set[tuple[str, ...]]] = {}
            for request in receiver.requests:
                body = Webhook(SECRET).verify(request.body, request.headers)
                assert body["id"] == request.headers["webhook-id"]
                sets.setdefault(body["id"], set()).add(tuple(e["id"] for e in body["events"]))
            reused = {batch: found for batch, found in sets.items() if len(found) > 1}
            assert not reused, {batch: [len(s) for s in found] for batch, found in reused.items()}
            assert len(delivered) == TOTAL
            # Some batch was retried under its own id: the rule does not just mint new ids.
            assert any(len(r) > 1 for r in _ids_by_batch(receiver).values())
            assert first.terminate() == 0
            assert second.terminate() == 0


def _ids_by_batch(receiver: Receiver) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = {}
    for request in receiver.requests:
        found.setdefault(request.headers["webhook-id"], []).append(request)
    return found
