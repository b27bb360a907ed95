"""The store conformance suite: what every backend of the ``Store`` protocol must do.

A backend's test module subclasses :class:`StoreContract` (its name must start
with ``Test`` there) and provides one fixture, ``make_store``: a callable
``(owner)`` returning an unopened store of that backend on the test's own data.
From it the contract builds its fixtures:

``store``
    an opened, empty store, closed after the test;
``reopen_store``
    an async callable ``(store, *, owner)`` closing that store and returning a
    new instance on the same data, opened for ``owner`` (closed after the test
    by the fixture);
``instance``
    an async callable ``(owner, *, takeover_after)`` opening another instance
    on the same data (see :mod:`tests.store_contract_leases`).

Every time is an explicit ``now`` on a fake clock starting at ``T0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import pytest

from bridge.core.events import Event
from bridge.core.trace import EventContext
from bridge.errors import StoreError
from bridge.store import packets
from bridge.store.base import Store
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    Packet,
    Rejection,
    SubscriptionState,
)
from tests.store_contract_accounts import AccountsStoreContract
from tests.store_contract_batch import BatchStoreContract
from tests.store_contract_catch_up import CatchUpStoreContract
from tests.store_contract_device import DeviceStoreContract
from tests.store_contract_directory import DirectoryStoreContract
from tests.store_contract_leases import Instance, LeaseStoreContract, instances
from tests.store_contract_outbox import OutboxStoreContract
from tests.store_contract_replies import ReplyStoreContract

__all__ = [
    "T0",
    "MakeStore",
    "Reopen",
    "StoreContract",
    "accepted",
    "make_event",
    "opened",
    "reopening",
]

T0 = 1_800_000_000.0
LEASE = 300.0
PENDING, DELIVERED, DEAD = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.DEAD


S = TypeVar("S", bound=Store)


MakeStore = Callable[[str], Store]


class Reopen(Protocol):
    def __call__(self, store: Store, *, owner: str) -> Awaitable[Store]: ...


@asynccontextmanager
async def opened(store: S) -> AsyncIterator[S]:
    """``store`` opened, and closed on the way out."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def reopening(make: Callable[[str], Store]) -> AsyncIterator[Reopen]:
    """The ``reopen_store`` callable of a backend whose instance for an owner is
    ``make(owner)``; every store it opened is closed on the way out."""
    stores: list[Store] = []

    async def reopen(store: Store, *, owner: str) -> Store:
        await store.close()
        fresh = make(owner)
        await fresh.open()
        stores.append(fresh)
        return fresh

    try:
        yield reopen
    finally:
        for fresh in stores:
            await fresh.close()


def make_event(
    n: int, *, device: str = "dev-1", kind: str = "device.online", at: float = T0
) -> Event:
    # Whole milliseconds: the stored envelope keeps milliseconds only.
    stamp = datetime.fromtimestamp(round(at, 3), UTC)
    return Event(
        id=f"evt_contract{n:05d}",
        type=kind,
        timestamp=stamp,
        source=f"mqtt://broker/devices/{device}/status",
        data={"device_id": device, "seq": n},
    )


def accepted(
    event: Event,
    *subscriptions: str,
    at: float = T0,
    packet: Packet | None = None,
    redelivery: bool = False,
) -> Accepted:
    return Accepted(event, tuple(subscriptions), at, packet, redelivery)


async def ingest(
    store: Store, items: Sequence[Accepted], *, now: float = T0, lease_until: float | None = None
) -> list[Delivery]:
    result = await store.ingest(
        items,
        [],
        now=now,
        owner="bridge-a",
        lease_until=now + LEASE if lease_until is None else lease_until,
    )
    return result.deliveries


async def unleased(store: Store, items: Sequence[Accepted], *, now: float = T0) -> list[Delivery]:
    """Ingest with a lease that has already run out, so the deliveries are claimable."""
    return await ingest(store, items, now=now, lease_until=now - 1)


def attempt(
    delivery: Delivery, *, at: float, code: int | None, error: str | None = None
) -> AttemptRecord:
    return AttemptRecord(delivery.id, delivery.attempts + 1, at, 12.5, code, error, "ok")


class StoreContract(
    AccountsStoreContract,
    BatchStoreContract,
    CatchUpStoreContract,
    DeviceStoreContract,
    DirectoryStoreContract,
    LeaseStoreContract,
    OutboxStoreContract,
    ReplyStoreContract,
):
    """Conformance tests; see the module docstring for the fixture they need."""

    @pytest.fixture
    async def store(self, make_store: MakeStore) -> AsyncIterator[Store]:
        async with opened(make_store("")) as store:
            yield store

    @pytest.fixture
    async def reopen_store(self, make_store: MakeStore) -> AsyncIterator[Reopen]:
        async with reopening(make_store) as reopen:
            yield reopen

    @pytest.fixture
    async def instance(self, make_store: MakeStore) -> AsyncIterator[Instance]:
        def make(owner: str, takeover_after: float) -> Store:
            store = make_store(owner)
            store.takeover_after = takeover_after
            return store

        async with instances(make) as opened_for:
            yield opened_for

    async def test_closed_store_refuses_calls(self, store: Store) -> None:
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError, match="not open"):
            await store.counts()
        assert not await store.is_writable()

    async def test_ingest_stores_events_and_leased_deliveries(self, store: Store) -> None:
        first, second = make_event(1), make_event(2, device="dev-2")
        result = await store.ingest(
            [accepted(first, "crm", "ops"), accepted(second, "crm")],
            [],
            now=T0,
            owner="bridge-a",
            lease_until=T0 + LEASE,
        )
        assert (result.stored, result.duplicates) == (2, 0)
        assert [(d.event_id, d.subscription) for d in result.deliveries] == [
            (first.id, "crm"),
            (first.id, "ops"),
            (second.id, "crm"),
        ]
        assert len({d.id for d in result.deliveries}) == 3
        assert all(d.id.startswith("dlv_") and d.attempts == 0 for d in result.deliveries)
        assert all(d.next_attempt_at == T0 and d.created_at == T0 for d in result.deliveries)

        stored = await store.get_event(first.id)
        assert stored is not None
        assert (stored.id, stored.type, stored.timestamp, stored.data) == (
            first.id,
            first.type,
            first.timestamp,
            first.data,
        )
        assert stored.body() == first.body()
        fetched = await store.get_delivery(result.deliveries[0].id)
        assert fetched is not None
        assert (fetched.status, fetched.event.id, fetched.subscription) == (
            PENDING,
            first.id,
            "crm",
        )
        # Leased to the ingesting instance: nobody else may claim them yet.
        assert (
            await store.claim_due("crm", now=T0 + 1, owner="b", lease_until=T0 + 60, limit=10) == []
        )
        assert await store.queue_depth("crm") == 2
        assert await store.get_event("evt_missing") is None
        assert await store.get_delivery("dlv_missing") is None

    async def test_duplicate_event_ids_create_nothing(self, store: Store) -> None:
        event = make_event(1)
        result = await store.ingest(
            [accepted(event, "crm"), accepted(event, "crm")], [], now=T0, owner="a", lease_until=T0
        )
        assert (result.stored, result.duplicates, len(result.deliveries)) == (1, 1, 1)
        again = await store.ingest(
            [accepted(event, "crm", "ops")], [], now=T0 + 5, owner="a", lease_until=T0
        )
        assert (again.stored, again.duplicates, again.deliveries) == (0, 1, [])
        counts = await store.counts()
        assert (counts["events"], counts["pending"]) == (1, 1)

    async def test_a_redelivery_is_a_copy_only_of_the_same_packet_on_an_earlier_connection(
        self, store: Store
    ) -> None:
        reading, other = packets.digest("t", b"21.5"), packets.digest("t", b"22.0")
        numbers = iter(range(1, 100))

        async def stored(mid: int, connection: str, content: bytes, *, dup: bool) -> bool:
            """Ingest one message; whether it became a new event."""
            item = accepted(
                make_event(next(numbers)),
                "crm",
                packet=Packet(mid, connection, content),
                redelivery=dup,
            )
            result = await store.ingest(
                [item], [], now=T0, owner="a", lease_until=T0, packet_window=3
            )
            return result.stored == 1

        assert await stored(1, "c1", reading, dup=False)
        # The same reading again (devices repeat themselves): a new message, even as DUP.
        assert await stored(2, "c1", reading, dup=False)
        # A copy of the first on a new connection: same packet id and content.
        assert not await stored(2, "c2", reading, dup=True)
        # Another content under that id, or that content under another id: new.
        assert await stored(2, "c2", other, dup=True)
        assert await stored(7, "c2", reading, dup=True)
        # The packet id's latest use counts: c2 used 2 for "other" since.
        assert not await stored(2, "c3", other, dup=True)
        assert await stored(2, "c3", reading, dup=True)
        # On its own connection a DUP is never judged by the log (ingest drops those).
        assert await stored(5, "c3", other, dup=False)
        assert await stored(5, "c3", other, dup=True)
        # Out of the window (the last 3 messages): no longer a possible copy.
        for mid in (10, 11, 12):
            assert await stored(mid, "c3", other, dup=False)
        assert await stored(7, "c4", reading, dup=True)

    async def test_without_a_packet_window_nothing_is_logged(self, store: Store) -> None:
        digest = packets.digest("t", b"x")
        first = accepted(make_event(1), "crm", packet=Packet(1, "c1", digest))
        copy = accepted(make_event(2), "crm", packet=Packet(1, "c2", digest), redelivery=True)
        for item in (first, copy):
            result = await store.ingest([item], [], now=T0, owner="a", lease_until=T0)
            assert result.stored == 1

    async def test_event_without_subscriptions_is_kept(self, store: Store) -> None:
        result = await store.ingest(
            [accepted(make_event(1))], [], now=T0, owner="a", lease_until=T0
        )
        assert (result.stored, result.deliveries) == (1, [])
        assert await store.get_event(make_event(1).id) is not None

    async def test_rejections_kept_newest_first(self, store: Store) -> None:
        rejections = [
            Rejection(T0 + i, f"devices/d{i}/events", b"\xff\x00not json", "invalid_json", f"n{i}")
            for i in range(3)
        ]
        result = await store.ingest([], rejections, now=T0, owner="a", lease_until=T0)
        assert (result.stored, result.duplicates) == (0, 0)
        listed = await store.list_rejected(limit=2)
        assert listed == [rejections[2], rejections[1]]
        assert (await store.counts())["rejected"] == 3

    async def test_large_batch_is_one_ingest(self, store: Store) -> None:
        items = [accepted(make_event(i, device=f"dev-{i % 7}"), "crm") for i in range(700)]
        result = await store.ingest(items, [], now=T0, owner="a", lease_until=T0)
        assert (result.stored, len(result.deliveries)) == (700, 700)
        assert await store.queue_depth("crm") == 700

    async def test_claim_due_oldest_first_and_leased(self, store: Store) -> None:
        older = await unleased(store, [accepted(make_event(1), "crm")], now=T0)
        newer = await unleased(store, [accepted(make_event(2), "crm")], now=T0 + 10)
        await unleased(store, [accepted(make_event(3), "ops")], now=T0)
        now = T0 + 20

        first = await store.claim_due("crm", now=now, owner="b", lease_until=now + 60, limit=1)
        assert [d.id for d in first] == [older[0].id]
        assert first[0].event.id == make_event(1).id
        second = await store.claim_due("crm", now=now, owner="b", lease_until=now + 60, limit=5)
        assert [d.id for d in second] == [newer[0].id]
        # Both are leased now: not claimable again while the lease lives...
        assert (
            await store.claim_due("crm", now=now + 59, owner="c", lease_until=now + 120, limit=5)
            == []
        )
        # ...and claimable by anyone once it has run out (the owner died).
        taken_over = await store.claim_due(
            "crm", now=now + 61, owner="c", lease_until=now + 120, limit=5
        )
        assert [d.id for d in taken_over] == [older[0].id, newer[0].id]

    async def test_claim_due_skips_deliveries_not_yet_due(self, store: Store) -> None:
        later = await store.create_deliveries(make_event(1), ["crm"], now=T0 + 100)
        assert (
            await store.claim_due("crm", now=T0 + 99, owner="b", lease_until=T0 + 200, limit=5)
            == []
        )
        claimed = await store.claim_due(
            "crm", now=T0 + 100, owner="b", lease_until=T0 + 200, limit=5
        )
        assert [d.id for d in claimed] == [later[0].id]

    async def test_next_due_at_ignores_leased_deliveries(self, store: Store) -> None:
        assert await store.next_due_at("crm") is None
        await store.create_deliveries(make_event(1), ["crm"], now=T0 + 100)
        assert await store.next_due_at("crm") == T0 + 100
        # In flight (leased): not a reason to wake up before T0 + 100.
        leased = await ingest(store, [accepted(make_event(2), "crm")], now=T0)
        assert await store.next_due_at("crm") == T0 + 100
        await store.release([leased[0].id])
        assert await store.next_due_at("crm") == T0
        assert await store.next_due_at("ops") is None

    async def test_claim_keeps_arrival_order_within_a_batch(self, store: Store) -> None:
        items = [accepted(make_event(i, device="dev-7"), "crm") for i in range(20)]
        created = await unleased(store, items)
        claimed = await store.claim_due("crm", now=T0, owner="b", lease_until=T0 + 60, limit=20)
        assert [d.id for d in claimed] == [d.id for d in created]
        assert [d.event.data["seq"] for d in claimed] == list(range(20))

    async def test_record_attempts_applies_outcomes(self, store: Store) -> None:
        ok, retry, dead = await ingest(
            store, [accepted(make_event(i), "crm") for i in range(3)], lease_until=T0 + LEASE
        )
        at = T0 + 1
        await store.record_attempts(
            [
                (attempt(ok, at=at, code=200), AttemptOutcome(DELIVERED)),
                (attempt(retry, at=at, code=503), AttemptOutcome(PENDING, next_attempt_at=T0 + 60)),
                (
                    attempt(dead, at=at, code=None, error="timeout"),
                    AttemptOutcome(DEAD, reason="exhausted"),
                ),
                # A delivery that no longer exists must not fail the batch.
                (AttemptRecord("dlv_gone", 1, at, 1.0, 200, None, None), AttemptOutcome(DELIVERED)),
            ],
            now=at,
        )
        got = {d.id: await store.get_delivery(d.id) for d in (ok, retry, dead)}
        after_ok = got[ok.id]
        assert after_ok is not None
        assert (after_ok.status, after_ok.attempts, after_ok.next_attempt_at) == (
            DELIVERED,
            1,
            None,
        )
        after_retry = got[retry.id]
        assert after_retry is not None
        assert (after_retry.status, after_retry.attempts, after_retry.next_attempt_at) == (
            PENDING,
            1,
            T0 + 60,
        )
        assert after_retry.last_status_code == 503
        after_dead = got[dead.id]
        assert after_dead is not None
        assert (after_dead.status, after_dead.dead_reason, after_dead.last_error) == (
            DEAD,
            "exhausted",
            "timeout",
        )

        history = await store.attempts(retry.id)
        assert history == [AttemptRecord(retry.id, 1, at, 12.5, 503, None, "ok")]
        assert await store.attempts("dlv_gone") == []
        # The lease was released: the retry is claimable when due, not before.
        assert (
            await store.claim_due("crm", now=T0 + 59, owner="b", lease_until=T0 + 120, limit=5)
            == []
        )
        claimed = await store.claim_due(
            "crm", now=T0 + 60, owner="b", lease_until=T0 + 120, limit=5
        )
        assert [d.id for d in claimed] == [retry.id]
        assert claimed[0].attempts == 1
        assert await store.queue_depth("crm") == 1
        counts = await store.counts()
        assert (counts["pending"], counts["delivered"], counts["dead"]) == (1, 1, 1)

    async def test_release_makes_deliveries_claimable(self, store: Store) -> None:
        created = await ingest(store, [accepted(make_event(i), "crm") for i in range(3)])
        await store.release([created[0].id, created[2].id])
        await store.release([])
        claimed = await store.claim_due("crm", now=T0 + 1, owner="b", lease_until=T0 + 60, limit=5)
        assert [d.id for d in claimed] == [created[0].id, created[2].id]

    async def test_requeue(self, store: Store) -> None:
        done, dead = await ingest(store, [accepted(make_event(i), "crm") for i in range(2)])
        await store.record_attempts(
            [
                (attempt(done, at=T0, code=200), AttemptOutcome(DELIVERED)),
                (attempt(dead, at=T0, code=410), AttemptOutcome(DEAD, reason="gone")),
            ],
            now=T0,
        )
        assert await store.requeue(done.id, now=T0 + 100)
        assert await store.requeue(dead.id, now=T0 + 100)
        assert not await store.requeue("dlv_unknown", now=T0 + 100)
        requeued = await store.get_delivery(dead.id)
        assert requeued is not None
        assert (requeued.status, requeued.next_attempt_at, requeued.dead_reason) == (
            PENDING,
            T0 + 100,
            None,
        )
        assert requeued.attempts == 1  # the history stays: the next try is attempt 2
        claimed = await store.claim_due(
            "crm", now=T0 + 100, owner="b", lease_until=T0 + 160, limit=5
        )
        assert {d.id for d in claimed} == {done.id, dead.id}
        # A pending delivery under a lease is requeued too: due now, lease dropped.
        assert await store.requeue(done.id, now=T0 + 101)
        again = await store.claim_due("crm", now=T0 + 101, owner="c", lease_until=T0 + 160, limit=5)
        assert [d.id for d in again] == [done.id]

    async def test_purge_removes_finished_deliveries_past_retention(self, store: Store) -> None:
        shared = make_event(1)
        delivered, dead, kept = await ingest(
            store, [accepted(shared, "crm", "ops"), accepted(make_event(2), "crm")]
        )
        await store.record_attempts(
            [
                (attempt(delivered, at=T0 + 10, code=200), AttemptOutcome(DELIVERED)),
                (attempt(dead, at=T0 + 20, code=500), AttemptOutcome(DEAD, reason="exhausted")),
                (
                    attempt(kept, at=T0 + 30, code=500),
                    AttemptOutcome(PENDING, next_attempt_at=T0 + 90),
                ),
            ],
            now=T0 + 10,
        )
        # Only the delivered one is past its bound: it goes, with its attempt (a first
        # success, kept on its row); the event stays because its other delivery (dead)
        # is still kept.
        removed = await store.purge(delivered_before=T0 + 15, dead_before=T0 + 5)
        assert removed == 1
        assert await store.get_delivery(delivered.id) is None
        assert await store.attempts(delivered.id) == []
        assert await store.get_event(shared.id) is not None
        # Then the dead one: delivery, attempt and now-orphaned event.
        removed = await store.purge(delivered_before=T0 + 15, dead_before=T0 + 15)
        assert removed == 3
        assert await store.get_event(shared.id) is None
        assert await store.get_delivery(kept.id) is not None
        assert await store.get_event(make_event(2).id) is not None
        assert await store.purge(delivered_before=T0 + 1e6, dead_before=T0 + 1e6) == 0

    async def test_expire_counts_from_receipt_not_from_the_device_clock(self, store: Store) -> None:
        # A device clock in 2001 says nothing: both were received at T0.
        ancient = make_event(1, at=978_307_200.0)
        received_early = make_event(2)
        leased_early = make_event(3)
        late = make_event(4)
        (kept,) = await unleased(store, [accepted(ancient, "crm")], now=T0)
        expired = (await unleased(store, [accepted(received_early, "crm")], now=T0 - 1000))[0]
        leased = await ingest(store, [accepted(leased_early, "crm")], now=T0 - 1000)
        await unleased(store, [accepted(late, "crm")], now=T0 + 10)
        counts = await store.expire_older_than(received_before=T0 - 500, now=T0 - 1000 + 1)
        assert counts == {"crm": 1}
        after = await store.get_delivery(expired.id)
        assert after is not None
        assert (after.status, after.dead_reason) == (DEAD, "too_old")
        in_flight = await store.get_delivery(leased[0].id)
        assert in_flight is not None and in_flight.status is PENDING
        still = await store.get_delivery(kept.id)
        assert still is not None and still.status is PENDING
        # Once its lease has run out it is expired too.
        counts = await store.expire_older_than(received_before=T0 - 500, now=T0 - 1000 + LEASE + 1)
        assert counts == {"crm": 1}
        assert await store.queue_depth("crm") == 2

    async def test_an_operators_retry_restarts_the_age(self, store: Store) -> None:
        (delivery,) = await unleased(store, [accepted(make_event(1), "crm")], now=T0 - 1000)
        await store.record_attempts(
            [(attempt(delivery, at=T0 - 999, code=500), AttemptOutcome(DEAD, reason="x"))],
            now=T0 - 999,
        )
        assert await store.requeue(delivery.id, now=T0)
        again = await store.get_delivery(delivery.id)
        assert again is not None and again.age_start == T0
        assert await store.expire_older_than(received_before=T0 - 500, now=T0) == {}

    async def test_a_paused_subscriptions_queue_does_not_age(self, store: Store) -> None:
        items = [accepted(make_event(1), "crm", "ops"), accepted(make_event(2), "off", "gone")]
        deliveries = await unleased(store, items, now=T0 - 1000)
        await store.save_subscription_state(SubscriptionState("gone", disabled=True))
        counts = await store.expire_older_than(received_before=T0 - 500, now=T0, paused=["off"])
        assert counts == {"crm": 1, "ops": 1}
        # The pause of "off" lasted 900 s: its age now starts at T0 - 100.
        assert await store.resume_age("off", paused_for=900.0) == 1
        off = next(d for d in deliveries if d.subscription == "off")
        moved = await store.get_delivery(off.id)
        assert moved is not None and moved.age_start == T0 - 100
        assert await store.expire_older_than(received_before=T0 - 500, now=T0) == {}
        # Disabled in the store: left alone until enabled (without a recorded pause).
        await store.save_subscription_state(SubscriptionState("gone", disabled=False))
        assert await store.expire_older_than(received_before=T0 - 500, now=T0) == {"gone": 1}

    async def test_create_deliveries_for_replay(self, store: Store) -> None:
        event = make_event(1)
        first = await store.create_deliveries(event, ["crm", "ops"], now=T0)
        second = await store.create_deliveries(event, ["crm"], now=T0 + 1)
        assert len({d.id for d in first + second}) == 3
        assert all(d.status is PENDING and d.attempts == 0 for d in first + second)
        assert (await store.counts())["events"] == 1
        claimed = await store.claim_due("crm", now=T0 + 1, owner="b", lease_until=T0 + 60, limit=5)
        assert [d.id for d in claimed] == [first[0].id, second[0].id]
        assert claimed[0].event.body() == event.body()

    async def test_event_context_is_kept_beside_the_envelope(self, store: Store) -> None:
        context = EventContext(
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            parent_id="00f067aa0ba902b7",
            tracestate="vendor=1",
            response_topic="replies/dev-1",
            correlation_data=b"\x00\xff\x80req",
        )
        event = make_event(1).with_context(context)
        (delivery,) = await unleased(store, [accepted(event, "crm"), accepted(make_event(2))])
        claimed = await store.claim_due("crm", now=T0, owner="b", lease_until=T0 + 60, limit=5)
        assert [d.event.context for d in claimed] == [context]
        assert claimed[0].event.body() == make_event(1).body()  # not in what receivers get
        stored = await store.get_event(event.id)
        assert stored is not None and stored.context == context
        fetched = await store.get_delivery(delivery.id)
        assert fetched is not None and fetched.event.context == context
        plain = await store.get_event(make_event(2).id)
        assert plain is not None and plain.context is None
        # A replay keeps it too.
        (replayed,) = await store.create_deliveries(event.with_id("evt_replay1"), ["ops"], now=T0)
        again = await store.get_delivery(replayed.id)
        assert again is not None and again.event.context == context

    async def test_list_deliveries_pages_and_filters(self, store: Store) -> None:
        made: list[Delivery] = []
        for i in range(12):
            made += await ingest(
                store, [accepted(make_event(i), "crm" if i % 3 else "ops")], now=T0 + i
            )
        await store.record_attempts(
            [(attempt(made[5], at=T0 + 20, code=200), AttemptOutcome(DELIVERED))], now=T0 + 20
        )

        async def every_page(
            subscription: str | None = None,
            status: DeliveryStatus | None = None,
            since: float | None = None,
            until: float | None = None,
        ) -> list[Delivery]:
            found: list[Delivery] = []
            cursor: str | None = None
            for _ in range(20):
                page, cursor = await store.list_deliveries(
                    subscription=subscription,
                    status=status,
                    since=since,
                    until=until,
                    cursor=cursor,
                    limit=5,
                )
                assert len(page) <= 5
                found += page
                if cursor is None:
                    return found
            raise AssertionError("paging did not end")

        everything = await every_page()
        assert [d.id for d in everything] == [d.id for d in reversed(made)]
        crm = await every_page(subscription="crm")
        assert [d.created_at for d in crm] == [T0 + i for i in reversed(range(12)) if i % 3]
        delivered = await every_page(status=DELIVERED)
        assert [d.id for d in delivered] == [made[5].id]
        window = await every_page(since=T0 + 3, until=T0 + 6)
        assert [d.created_at for d in window] == [T0 + 5, T0 + 4, T0 + 3]
        page, cursor = await store.list_deliveries(
            subscription="nobody", status=None, since=None, until=None, cursor=None, limit=5
        )
        assert (page, cursor) == ([], None)
        with pytest.raises(StoreError):
            await store.list_deliveries(
                subscription=None, status=None, since=None, until=None, cursor="garbage!", limit=5
            )

    async def test_subscription_state_round_trip(self, store: Store) -> None:
        assert await store.subscription_states() == {}
        state = SubscriptionState("crm", failing_since=T0, last_failure=T0 + 5, extra={"note": "x"})
        await store.save_subscription_state(state)
        disabled = SubscriptionState(
            "crm", disabled=True, disabled_reason="gone", last_success=T0 - 9
        )
        await store.save_subscription_state(disabled)
        await store.save_subscription_state(SubscriptionState("ops"))
        assert await store.subscription_states() == {
            "crm": disabled,
            "ops": SubscriptionState("ops"),
        }

    async def test_counts_and_write_probe(self, store: Store) -> None:
        assert await store.counts() == {
            "pending": 0,
            "delivered": 0,
            "dead": 0,
            "events": 0,
            "rejected": 0,
        }
        assert await store.is_writable()

    async def test_everything_survives_reopen(self, store: Store, reopen_store: Reopen) -> None:
        created = await ingest(store, [accepted(make_event(1), "crm", "ops")])
        await store.record_attempts(
            [(attempt(created[0], at=T0 + 1, code=200), AttemptOutcome(DELIVERED))], now=T0 + 1
        )
        await store.ingest(
            [], [Rejection(T0, "t", b"x", "invalid_json", "d")], now=T0, owner="a", lease_until=T0
        )
        await store.save_subscription_state(SubscriptionState("crm", failing_since=T0))

        reopened = await reopen_store(store, owner="")
        assert await reopened.counts() == {
            "pending": 1,
            "delivered": 1,
            "dead": 0,
            "events": 1,
            "rejected": 1,
        }
        assert len(await reopened.attempts(created[0].id)) == 1
        assert (await reopened.subscription_states())["crm"].failing_since == T0
        # The lease taken before the restart still holds until it runs out.
        assert (
            await reopened.claim_due("ops", now=T0 + 1, owner="b", lease_until=T0 + 60, limit=5)
            == []
        )
        claimed = await reopened.claim_due(
            "ops", now=T0 + LEASE + 1, owner="b", lease_until=T0 + 999, limit=5
        )
        assert [d.id for d in claimed] == [created[1].id]

    async def test_opening_for_an_owner_drops_its_stale_leases(
        self, store: Store, reopen_store: Reopen
    ) -> None:
        # "bridge-a" is killed with deliveries leased; "bridge-b" holds one too.
        mine = await ingest(store, [accepted(make_event(i), "crm") for i in range(3)])
        theirs = await store.ingest(
            [accepted(make_event(9), "crm")], [], now=T0, owner="bridge-b", lease_until=T0 + LEASE
        )
        restarted = await reopen_store(store, owner="bridge-a")
        claimed = await restarted.claim_due(
            "crm", now=T0 + 1, owner="bridge-a", lease_until=T0 + 60, limit=10
        )
        assert [d.id for d in claimed] == [d.id for d in mine]
        assert theirs.deliveries[0].id not in {d.id for d in claimed}
