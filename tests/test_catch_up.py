"""Catching up after an outage, whichever instance saw the failures.

One dispatcher (instance B) runs against a real store and a real receiver
that answers 2xx. What another instance (A) left in the shared store is
written as A's recorder writes it: deliveries it failed endpoint-wide,
waiting ten minutes for their slot, and the failing streak A stored. B never
failed an attempt itself. Its first success ends the stored streak, and the
deliveries A's failures held go out at once: the cause is asserted (each
went out although its stored next attempt was minutes away), not a timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config import Settings, parse_config
from bridge.core.events import Event
from bridge.core.outcomes import AttemptResult
from bridge.core.retry import schedule_after
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.send import Sender
from bridge.observe.metrics import Metrics
from bridge.store import open_store
from bridge.store.base import Store
from bridge.store.rows import Accepted, AttemptRecord, Delivery, DeliveryStatus, SubscriptionState
from tests.conftest import SECRET
from tests.support.postgres import PostgresDatabase
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import wait_until

REFUSED = AttemptResult.failure("connection refused", latency_ms=1.0)
DELIVERED = DeliveryStatus.DELIVERED


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hookbridge.db"
    database: PostgresDatabase = request.getfixturevalue("postgres")
    return database.schema_url("catchup")


def _settings(store_url: str, receiver: Receiver) -> Settings:
    return parse_config(
        {
            "mqtt": {"client_id": "hb-b"},
            "store": {"url": store_url},
            "retry": {"schedule": ["1s", "10m", "1h"], "jitter": 0.0},
            "security": {"allow_private_targets": True},
            "subscriptions": [{"name": "crm", "url": receiver.url, "secret": SECRET}],
        }
    )


def _event(n: int) -> Event:
    return Event(
        id=f"evt_catchup{n:05d}",
        type="session.started",
        timestamp=datetime.now(UTC),
        source="mqtt://broker/devices/dev-1/events",
        data={"device_id": f"dev-{n}"},
    )


@asynccontextmanager
async def _store_b(settings: Settings) -> AsyncIterator[Store]:
    """The store as instance B opens it (A's work is in it already or comes next)."""
    store = open_store(settings.store, owner="hb-b")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _instance_b(settings: Settings, store: Store) -> AsyncIterator[Dispatcher]:
    sender = Sender(settings, user_agent="hookbridge/test")
    await sender.start()
    dispatcher = Dispatcher(
        settings, store, sender, owner="hb-b", metrics=Metrics(), state_refresh=0.1
    )
    await dispatcher.prepare()
    task = asyncio.create_task(dispatcher.run(), name="instance-b")
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(1.0)
        await asyncio.wait_for(task, 10)
        await sender.close()


async def _failed_by_a(store: Store, count: int, now: float) -> list[Delivery]:
    """What instance A leaves: deliveries leased to it, failed endpoint-wide twice,
    waiting for their ten-minute slot, and the failing streak it stored."""
    items = [Accepted(_event(n), ("crm",), now) for n in range(count)]
    result = await store.ingest(items, [], now=now, owner="hb-a", lease_until=now + 600)
    waiting = []
    for delivery in result.deliveries:
        step = 0
        for attempt in (1, 2):
            outcome = schedule_after(
                REFUSED, steps=step, early=False, retry=_RETRY, now=now, rand=0.5
            )
            step = outcome.retry_step or step
            record = AttemptRecord(delivery.id, attempt, now, 1.0, None, REFUSED.error, None)
            await store.record_attempts([(record, outcome)], now=now)
        found = await store.get_delivery(delivery.id)
        assert found is not None
        waiting.append(found)
    await store.save_subscription_state(SubscriptionState("crm", failing_since=now - 5))
    return waiting


_RETRY = parse_config({"retry": {"schedule": ["1s", "10m", "1h"], "jitter": 0.0}}).retry


def _sent_ids(receiver: Receiver) -> Callable[[], set[str]]:
    return lambda: {r.headers["hookbridge-delivery-id"] for r in receiver.requests}


async def test_an_instance_that_saw_no_failure_ends_the_streak_and_catches_up(
    store_url: str,
) -> None:
    async with receiving() as receiver:
        settings = _settings(store_url, receiver)
        async with _store_b(settings) as store, _instance_b(settings, store) as b:
            lane = b.lanes["crm"]
            now = time.time()
            waiting = await _failed_by_a(store, 3, now)
            assert all(d.next_attempt_at and d.next_attempt_at > now + 500 for d in waiting)
            assert all(d.retry_step == 2 for d in waiting)
            # B learns A's streak from the store on its next refresh.
            await wait_until(
                lambda: lane.state.failing_since is not None, message="B sees A's streak"
            )
            assert receiver.requests == []  # B has made no attempt at all
            (fresh,) = await store.create_deliveries(_event(99), ["crm"], now=time.time())
            b.poke("crm")
            sent = _sent_ids(receiver)
            expected = {fresh.id, *(d.id for d in waiting)}
            await wait_until(lambda: sent() >= expected, message="the waiting ones sent")

            async def recorded() -> bool:
                found = [await store.get_delivery(d.id) for d in waiting]
                return all(f is not None and f.status is DELIVERED for f in found)

            await wait_until(recorded, message="their results recorded")
            for delivery in waiting:
                (_, _, third) = await store.attempts(delivery.id)
                # Sent although its stored next attempt was ten minutes away.
                assert delivery.next_attempt_at is not None
                assert third.started_at < delivery.next_attempt_at - 500
            state = (await store.subscription_states())["crm"]
            assert (state.failing_since, state.catching_up) == (None, None)
            caught = b._metrics.registry.get_sample_value(
                "hookbridge_caught_up_total", {"subscription": "crm"}
            )
            assert caught == 3
            assert all(r.headers["webhook-id"] for r in receiver.requests)


async def test_a_catch_up_left_unfinished_is_finished_by_another_instance(
    store_url: str,
) -> None:
    """A mark in the store (the instance that ended the streak died mid-way) is enough."""
    async with receiving() as receiver:
        settings = _settings(store_url, receiver)
        async with _store_b(settings) as store:
            now = time.time()
            waiting = await _failed_by_a(store, 2, now)
            assert await store.end_streak("crm", now=now + 0.001)
            async with _instance_b(settings, store):
                sent = _sent_ids(receiver)
                await wait_until(
                    lambda: sent() >= {d.id for d in waiting}, message="the marked catch-up done"
                )
            assert (await store.subscription_states())["crm"].catching_up is None
