"""The lease, fencing, dedupe-window and housekeeping part of the store conformance suite.

:class:`LeaseStoreContract` is a base of ``tests.store_contract.StoreContract``.
Besides ``store`` it needs the fixture ``instance``: an async callable
``(owner, *, takeover_after=30.0)`` returning another store on the same data,
opened for ``owner`` (so it keeps a heartbeat row), closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

from bridge.core.events import Event
from bridge.store import packets
from bridge.store.base import Store
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    Packet,
)
from tests.support.waiting import wait_until

__all__ = ["Instance", "LeaseStoreContract", "claim_all", "instances"]

T0 = 1_800_000_000.0
LEASE = 300.0
PENDING, DELIVERED = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED


class Instance(Protocol):
    def __call__(self, owner: str, *, takeover_after: float = 30.0) -> Awaitable[Store]: ...


@asynccontextmanager
async def instances(make: Callable[[str, float], Store]) -> AsyncIterator[Instance]:
    """The ``instance`` fixture of a backend whose store for an owner is ``make(owner, t)``."""
    opened: list[Store] = []

    async def instance(owner: str, *, takeover_after: float = 30.0) -> Store:
        store = make(owner, takeover_after)
        await store.open()
        opened.append(store)
        return store

    try:
        yield instance
    finally:
        for store in opened:
            await store.close()


async def claim_all(store: Store, owner: str, *, rounds: int, now: float = T0) -> list[str]:
    """The ids of what ``owner`` claims of subscription ``crm``, 7 at a time, until
    nothing is due (or ``rounds`` claims were made)."""
    taken: list[str] = []
    for _ in range(rounds):
        batch = await store.claim_due("crm", now=now, owner=owner, lease_until=now + 60, limit=7)
        if not batch:
            break
        taken += [d.id for d in batch]
    return taken


def _event(n: int, *, at: float = T0) -> Event:
    return Event(
        id=f"evt_lease{n:05d}",
        type="device.online",
        timestamp=datetime.fromtimestamp(round(at, 3), UTC),
        source="mqtt://broker/devices/dev-1/status",
        data={"device_id": "dev-1", "seq": n},
    )


def _record(delivery: Delivery, *, at: float, code: int, token: int | None) -> AttemptRecord:
    return AttemptRecord(delivery.id, delivery.attempts + 1, at, 5.0, code, None, None, token)


async def _one_leased(store: Store, owner: str, n: int = 1) -> Delivery:
    result = await store.ingest(
        [Accepted(_event(n), ("crm",), T0)], [], now=T0, owner=owner, lease_until=T0 + LEASE
    )
    return result.deliveries[0]


class LeaseStoreContract:
    async def test_a_live_holder_keeps_its_claims_past_lease_until(
        self, instance: Instance
    ) -> None:
        a = await instance("bridge-a")
        b = await instance("bridge-b")
        held = await _one_leased(a, "bridge-a")
        later = T0 + LEASE + 3600  # a receiver outage far longer than the lease
        await a.heartbeat()
        assert (
            await b.claim_due("crm", now=later, owner="bridge-b", lease_until=later, limit=5) == []
        )
        # Its holder claims it back (it may have lost track of it) under the same token,
        # so a result of the attempt still running applies.
        again = await a.claim_due(
            "crm", now=later, owner="bridge-a", lease_until=later + LEASE, limit=5
        )
        assert [(d.id, d.lease_token) for d in again] == [(held.id, held.lease_token)]

    async def test_a_dead_holders_claims_are_taken_over_and_its_late_result_fenced(
        self, instance: Instance
    ) -> None:
        a = await instance("bridge-a")
        b = await instance("bridge-b", takeover_after=1.5)
        held = await _one_leased(a, "bridge-a")
        await a.heartbeat()  # alive just now: a busy machine must not make it look dead
        assert await b.claim_due("crm", now=T0 + 1, owner="bridge-b", lease_until=T0, limit=5) == []
        taken: list[Delivery] = []

        async def taken_over() -> bool:
            # bridge-a stops beating: once its row is older than takeover_after, b takes over.
            taken.extend(
                await b.claim_due(
                    "crm", now=T0 + 1, owner="bridge-b", lease_until=T0 + LEASE, limit=5
                )
            )
            return bool(taken)

        await wait_until(taken_over, timeout=15, interval=0.1, message="takeover")
        assert [d.id for d in taken] == [held.id]
        assert taken[0].lease_token != held.lease_token
        # bridge-a's late failure (old token) changes nothing; bridge-b's success applies.
        late = _record(held, at=T0 + 2, code=500, token=held.lease_token)
        await a.record_attempts(
            [(late, AttemptOutcome(PENDING, next_attempt_at=T0 + 9))], now=T0 + 2
        )
        still = await b.get_delivery(held.id)
        assert still is not None and still.status is PENDING and still.attempts == 0
        done = _record(taken[0], at=T0 + 3, code=200, token=taken[0].lease_token)
        await b.record_attempts([(done, AttemptOutcome(DELIVERED))], now=T0 + 3)
        await a.record_attempts(
            [(late, AttemptOutcome(PENDING, next_attempt_at=T0 + 9))], now=T0 + 4
        )
        final = await b.get_delivery(held.id)
        assert final is not None and final.status is DELIVERED
        # Both tries are in the history: the late one happened, it just decides nothing.
        assert [r.status_code for r in await b.attempts(held.id)] == [500, 200, 500]

    async def test_requeue_fences_the_result_of_an_attempt_in_flight(self, store: Store) -> None:
        held = await _one_leased(store, "a")
        assert await store.requeue(held.id, now=T0 + 5)
        late = _record(held, at=T0 + 6, code=200, token=held.lease_token)
        await store.record_attempts([(late, AttemptOutcome(DELIVERED))], now=T0 + 6)
        found = await store.get_delivery(held.id)
        assert found is not None and found.status is PENDING
        claimed = await store.claim_due("crm", now=T0 + 7, owner="b", lease_until=T0 + 60, limit=5)
        assert [d.id for d in claimed] == [held.id]
        assert claimed[0].lease_token > held.lease_token

    async def test_closing_an_instance_hands_its_leases_back(self, instance: Instance) -> None:
        a = await instance("bridge-a")
        b = await instance("bridge-b")
        held = await _one_leased(a, "bridge-a")
        await a.close()
        claimed = await b.claim_due("crm", now=T0 + 1, owner="bridge-b", lease_until=T0, limit=5)
        assert [d.id for d in claimed] == [held.id]

    async def test_each_client_id_has_a_packet_log_of_its_own(self, store: Store) -> None:
        content = packets.digest("devices/d/events", b"{}")

        def item(n: int, connection: str, *, dup: bool = False) -> Accepted:
            return Accepted(_event(n), ("crm",), T0, Packet(1, connection, content), dup)

        async def ingest(owner: str, one: Accepted) -> int:
            result = await store.ingest(
                [one], [], now=T0, owner=owner, lease_until=T0, packet_window=10
            )
            return result.stored

        assert await ingest("a", item(1, "a-1")) == 1
        # Another client (another member of a shared group): its DUP is not a's copy.
        assert await ingest("b", item(2, "b-1", dup=True)) == 1
        assert await ingest("a", item(3, "a-2", dup=True)) == 0

    async def test_a_first_success_lives_on_its_deliverys_row_and_shows_in_its_history(
        self, store: Store
    ) -> None:
        first = await _one_leased(store, "a", n=1)
        record = AttemptRecord(first.id, 1, T0 + 1, 7.5, 200, None, "ok", first.lease_token)
        await store.record_attempts([(record, AttemptOutcome(DELIVERED))], now=T0 + 2)
        assert await store.attempts(first.id) == [
            AttemptRecord(first.id, 1, T0 + 1, 7.5, 200, None, "ok")
        ]
        # A retried one keeps every attempt: rows for each, none twice.
        second = await _one_leased(store, "a", n=2)
        tries = [
            (AttemptRecord(second.id, 1, T0 + 1, 5.0, 503, "HTTP 503", None, None),
             AttemptOutcome(PENDING, next_attempt_at=T0 + 2)),
            (AttemptRecord(second.id, 2, T0 + 3, 6.0, 200, None, "ok", None),
             AttemptOutcome(DELIVERED)),
        ]  # fmt: skip
        for one in tries:
            await store.record_attempts([one], now=T0 + 4)
        history = await store.attempts(second.id)
        assert [(r.attempt, r.status_code) for r in history] == [(1, 503), (2, 200)]

    async def test_purge_goes_through_many_chunks(self, store: Store) -> None:
        count = 2500  # more than two chunks of deliveries, then the events
        items = [Accepted(_event(n), ("crm",), T0) for n in range(count)]
        result = await store.ingest(items, [], now=T0, owner="a", lease_until=T0 + LEASE)
        # A failed first attempt each (an attempt row), then the success (its row's summary).
        failed = [
            (
                _record(d, at=T0 + 1, code=500, token=d.lease_token),
                AttemptOutcome(PENDING, next_attempt_at=T0),
            )
            for d in result.deliveries
        ]
        await store.record_attempts(failed, now=T0 + 1)
        outcomes = [
            (
                AttemptRecord(d.id, 2, T0 + 1, 5.0, 200, None, None, None),
                AttemptOutcome(DELIVERED),
            )
            for d in result.deliveries
        ]
        await store.record_attempts(outcomes, now=T0 + 1)
        removed = await store.purge(delivered_before=T0 + 2, dead_before=T0 + 2)
        assert removed == 4 * count  # two attempts each, deliveries, events
        counts = await store.counts()
        assert (counts["delivered"], counts["events"]) == (0, 0)

    async def test_oldest_pending_per_subscription(self, store: Store) -> None:
        await store.ingest(
            [Accepted(_event(1), ("crm", "ops"), T0)], [], now=T0, owner="a", lease_until=T0
        )
        later = await store.ingest(
            [Accepted(_event(2), ("crm",), T0 + 50)], [], now=T0 + 50, owner="a", lease_until=T0
        )
        assert await store.oldest_pending(["crm", "ops", "idle"]) == {"crm": T0, "ops": T0}
        outcomes = [
            (_record(d, at=T0 + 60, code=200, token=None), AttemptOutcome(DELIVERED))
            for d in (
                await store.claim_due("crm", now=T0 + 60, owner="a", lease_until=T0 + 99, limit=1)
            )
        ]
        await store.record_attempts(outcomes, now=T0 + 60)
        assert await store.oldest_pending(["crm"]) == {"crm": later.deliveries[0].created_at}
