"""The PostgreSQL store: the conformance suite on a real server, plus what only the
shared store has (concurrent claims from several instances, racing migrations,
read-only sessions, an unreachable server, group-commit throughput)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from bridge.config import StoreSettings
from bridge.core.events import Event
from bridge.core.presence import Observation, Presence, Transition
from bridge.errors import ConfigError, StoreError, StoreUnavailable
from bridge.store import open_store
from bridge.store.postgres.schema import SCHEMA_VERSION
from bridge.store.postgres.store import PostgresStore, parse_postgres_url
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    DeliveryStatus,
    PresencePolicy,
)
from tests.store_contract import T0, MakeStore, StoreContract, accepted, make_event, opened
from tests.store_contract_leases import claim_all
from tests.support.postgres import PostgresDatabase, fetch


@pytest.fixture
def pg_url(postgres: PostgresDatabase) -> str:
    return postgres.schema_url()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    async with opened(PostgresStore(pg_url)) as store:
        yield store


@pytest.fixture
def make_store(pg_url: str) -> MakeStore:
    return lambda owner: PostgresStore(pg_url, owner=owner)


class TestPostgresStoreContract(StoreContract):
    """The shared suite against a schema of its own on the real server."""


def test_urls_select_the_backend_and_keep_passwords_out(postgres: PostgresDatabase) -> None:
    url = "postgresql://hb:s3cret-pw@127.0.0.1:5432/hb?schema=blue&pool_size=4&sslmode=disable"
    store = open_store(StoreSettings(url=url), owner="bridge-a")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size, store.owner) == ("blue", 4, "bridge-a")
    assert "s3cret-pw" not in repr(store)
    dsn, schema, size = parse_postgres_url(url)
    assert (schema, size) == ("blue", 4)
    assert dsn == "postgresql://hb:s3cret-pw@127.0.0.1:5432/hb?sslmode=disable"
    for bad in ("postgresql://h/db?schema=x;drop", "postgresql://h/db?pool_size=0"):
        with pytest.raises(ConfigError, match=r"store\.url"):
            open_store(StoreSettings(url=bad), owner="")
    assert parse_postgres_url(postgres.url)[1:] == ("public", 10)


async def test_opening_migrates_once_and_records_the_version(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    # Four instances starting together on an empty schema: the advisory lock
    # makes one apply the step and the others find it applied.
    await asyncio.gather(*(s.open() for s in stores))
    try:
        rows = await fetch(pg_url, "SELECT version FROM schema_version")
        assert sorted(row[0] for row in rows) == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for s in stores:
            await s.close()


async def test_a_newer_schema_is_refused(pg_store: PostgresStore, pg_url: str) -> None:
    await pg_store.close()
    dsn, schema, _ = parse_postgres_url(pg_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute("INSERT INTO schema_version VALUES ($1, 0)", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    newer = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="newer"):
        await newer.open()
    with pytest.raises(StoreError, match="not open"):
        await newer.counts()


async def test_read_only_session_is_unavailable_for_writes(
    pg_store: PostgresStore, pg_url: str
) -> None:
    await pg_store.ingest([accepted(make_event(1), "crm")], [], now=T0, owner="a", lease_until=T0)
    # default_transaction_read_only is how a hot standby answers: SQLSTATE 25006.
    reader = PostgresStore(pg_url, read_only=True)
    await reader.open()
    try:
        assert await reader.get_event(make_event(1).id) is not None
        assert not await reader.is_writable()
        with pytest.raises(StoreUnavailable, match="ingest"):
            await reader.ingest(
                [accepted(make_event(2), "crm")], [], now=T0, owner="a", lease_until=T0
            )
    finally:
        await reader.close()
    assert await pg_store.is_writable()


async def test_unreachable_server_is_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    store = PostgresStore(
        "postgresql://hb:topsecret@127.0.0.1:9/hb", connect_timeout=2, acquire_timeout=2
    )
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "topsecret" not in str(caught.value)
    assert not await store.is_writable()


async def test_other_database_errors_are_store_errors(pg_store: PostgresStore) -> None:
    with pytest.raises(StoreError) as caught:
        await pg_store._run(lambda conn: conn.execute("SELECT * FROM nowhere"), action="test")
    assert not isinstance(caught.value, StoreUnavailable)
    assert isinstance(caught.value.__cause__, asyncpg.PostgresError)


async def test_concurrent_ingest_of_the_same_events_stores_each_once(pg_url: str) -> None:
    # Two instances given the same messages (a redelivery to another group member):
    # ON CONFLICT makes exactly one of them create the deliveries.
    stores = [PostgresStore(pg_url) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        items = [accepted(make_event(i), "crm") for i in range(300)]
        results = await asyncio.gather(
            *(
                s.ingest(items, [], now=T0, owner=f"b{n}", lease_until=T0)
                for n, s in enumerate(stores)
            )
        )
        assert sum(r.stored for r in results) == 300
        assert sum(len(r.deliveries) for r in results) == 300
        assert (await stores[0].counts())["pending"] == 300
    finally:
        for s in stores:
            await s.close()


async def test_instances_claiming_together_never_share_a_delivery(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        items = [accepted(make_event(i, device=f"dev-{i % 5}"), "crm") for i in range(600)]
        await stores[0].ingest(items, [], now=T0, owner="a", lease_until=T0 - 1)
        claimed = await asyncio.gather(
            *(claim_all(s, f"bridge-{n}", rounds=300) for n, s in enumerate(stores))
        )
        every = [d for batch in claimed for d in batch]
        assert len(every) == len(set(every)) == 600
        assert all(claimed), "every instance got a share"
        owners = await fetch(
            pg_url, "SELECT lease_owner, count(*) FROM deliveries GROUP BY lease_owner"
        )
        assert {row[0]: row[1] for row in owners} == {
            f"bridge-{n}": len(batch) for n, batch in enumerate(claimed)
        }
    finally:
        for s in stores:
            await s.close()


async def test_group_commit_stores_every_event_of_large_batches(pg_store: PostgresStore) -> None:
    """Batches of 500 events (one subscription each) are stored whole, each with its delivery.

    How fast they go in is measured by the benchmark (bench/RESULTS.md), never here.
    """
    batches = 20
    items = [
        [accepted(make_event(b * 500 + i, device=f"dev-{i % 50}"), "crm") for i in range(500)]
        for b in range(batches)
    ]
    # Warm the pool's prepared statements with a batch that is not timed.
    warm = [accepted(make_event(90_000 + i), "crm") for i in range(500)]
    for item in [*warm, *(item for batch in items for item in batch)]:
        item.event.body()  # encoded once on arrival in the bridge, not in the store
    await pg_store.ingest(warm, [], now=T0, owner="a", lease_until=T0)
    deliveries = 0
    for batch in items:
        result = await pg_store.ingest(batch, [], now=T0, owner="a", lease_until=T0)
        assert result.stored == 500
        assert result.duplicates == 0
        deliveries += len(result.deliveries)
    assert deliveries == batches * 500


async def test_ordered_claims_hold_per_device_across_instances(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        items = [accepted(make_event(i, device="dev-1"), "crm") for i in range(3)]
        items.append(accepted(make_event(9, device="dev-2"), "crm"))
        created = await stores[0].ingest(items, [], now=T0, owner="a", lease_until=T0 - 1)
        claims = await asyncio.gather(
            *(
                s.claim_due(
                    "crm", now=T0, owner=f"b{n}", lease_until=T0 + 60, limit=10, ordered=True
                )
                for n, s in enumerate(stores)
            )
        )
        # One head of line per device, whichever instance took it.
        taken = sorted(d.id for batch in claims for d in batch)
        assert taken == sorted([created.deliveries[0].id, created.deliveries[3].id])
        assert await stores[1].next_due_at("crm", ordered=True) is None
        head = created.deliveries[0]
        await stores[1].record_attempts(
            [
                (
                    AttemptRecord(head.id, 1, T0, 1.0, 200, None, None),
                    AttemptOutcome(DeliveryStatus.DELIVERED),
                )
            ],
            now=T0,
        )
        following = await stores[1].claim_due(
            "crm", now=T0, owner="b1", lease_until=T0 + 60, limit=10, ordered=True
        )
        assert [d.id for d in following] == [created.deliveries[1].id]
    finally:
        for s in stores:
            await s.close()


def _announce(transition: Transition) -> Accepted:
    event = Event(
        id=f"evt_presence_{transition.device_id}_{transition.changed_at!r}",
        type=f"device.{transition.state.value}",
        timestamp=datetime.fromtimestamp(round(transition.changed_at, 3), UTC),
        source="hookbridge://presence",
        data={"device_id": transition.device_id, "reason": transition.reason},
    )
    return Accepted(event, ("crm",), transition.changed_at)


async def test_presence_timeouts_are_emitted_by_one_instance(pg_url: str) -> None:
    policy = PresencePolicy(offline_after=90.0, announce=_announce)
    stores = [PostgresStore(pg_url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        seen = [
            Accepted(
                make_event(i, device=f"dev-{i}", kind="session.started"),
                ("crm",),
                T0,
                presence=Observation(f"dev-{i}", T0),
            )
            for i in range(20)
        ]
        await stores[0].ingest(seen, [], now=T0, owner="a", lease_until=T0, presence=policy)
        state = await stores[1].get_presence("dev-3")
        assert state is not None and state.state is Presence.ONLINE
        results = await asyncio.gather(
            *(
                s.claim_presence_timeouts(
                    now=T0 + 100, policy=policy, owner=f"b{n}", lease_until=T0 + 200, limit=50
                )
                for n, s in enumerate(stores)
            )
        )
        offline_events = [d.event.id for r in results for d in r.deliveries]
        assert len(offline_events) == len(set(offline_events)) == 20
        state = await stores[2].get_presence("dev-3")
        assert state is not None and state.state is Presence.OFFLINE
        assert state.reason == "heartbeat_timeout"
    finally:
        for s in stores:
            await s.close()


async def test_postgres_names_no_heads_the_claim_keeps_order_across_instances(
    pg_store: PostgresStore,
) -> None:
    # Two instances could each see an empty queue in concurrent batches: with
    # PostgreSQL an ordered subscription's deliveries always go through the claim.
    result = await pg_store.ingest(
        [accepted(make_event(1, device="d1"), "ordered")],
        [],
        now=T0,
        owner="a",
        lease_until=T0 + 60,
        ordered={"ordered"},
    )
    assert len(result.deliveries) == 1
    assert result.heads == frozenset()
