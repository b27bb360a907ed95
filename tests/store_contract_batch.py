"""The batching part of the store conformance suite: batch membership and ordered runs.

:class:`BatchStoreContract` is a base of ``tests.store_contract.StoreContract``
and needs its ``store`` fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.core.events import Event
from bridge.store.base import Store
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
)

__all__ = ["BatchStoreContract"]

T0 = 1_800_000_000.0
LEASE = 300.0
PENDING, DELIVERED = DeliveryStatus.PENDING, DeliveryStatus.DELIVERED


def _event(name: str, device: str | None) -> Event:
    data: dict[str, object] = {"device_id": device} if device else {"note": name}
    return Event(
        id=f"evt_batch_{name}",
        type="session.started",
        timestamp=datetime.fromtimestamp(T0, UTC),
        source="mqtt://broker/devices/x/events",
        data=data,
    )


async def _claimable(store: Store, *devices: str | None) -> list[Delivery]:
    items = [
        Accepted(_event(f"{device or 'none'}{n}", device), ("crm",), T0)
        for n, device in enumerate(devices)
    ]
    result = await store.ingest(items, [], now=T0, owner="x", lease_until=T0 - 1)
    return result.deliveries


def _settle(
    delivery: Delivery, status: DeliveryStatus, at: float
) -> tuple[AttemptRecord, AttemptOutcome]:
    record = AttemptRecord(
        delivery.id, delivery.attempts + 1, at, 1.0, 500, None, None, delivery.lease_token
    )
    next_at = at + 30 if status is PENDING else None
    return record, AttemptOutcome(status, next_attempt_at=next_at)


class BatchStoreContract:
    async def test_batch_membership_is_kept_and_moved(self, store: Store) -> None:
        one, two, three = await _claimable(store, "a", "a", "b")
        assert await store.batches_of([one.id, two.id, three.id]) == {}
        await store.assign_batch("bat_1", [one.id, two.id])
        assert await store.batches_of([one.id, two.id, three.id]) == {
            one.id: "bat_1",
            two.id: "bat_1",
        }
        # A failed batch keeps its membership while its deliveries wait for the retry.
        claimed = await store.claim_due("crm", now=T0, owner="x", lease_until=T0 + LEASE, limit=9)
        by_id = {d.id: d for d in claimed}
        await store.record_attempts(
            [_settle(by_id[one.id], PENDING, T0), _settle(by_id[two.id], PENDING, T0)], now=T0
        )
        assert await store.batches_of([one.id]) == {one.id: "bat_1"}
        assert await store.batch_members("bat_1") == [one.id, two.id]
        assert await store.batch_members("bat_none") == []
        # A delivery moves to the batch it is assigned to next; a gone one is skipped.
        # The batch it leaves is retired whole: its id never names a smaller set.
        await store.assign_batch("bat_2", [two.id, three.id, "dlv_gone"])
        assert await store.batches_of([one.id, two.id, three.id, "dlv_gone"]) == {
            two.id: "bat_2",
            three.id: "bat_2",
        }
        assert await store.batch_members("bat_1") == []
        assert await store.batch_members("bat_2") == [two.id, three.id]

    async def test_an_operator_retry_retires_the_batch_of_its_delivery(self, store: Store) -> None:
        one, two = await _claimable(store, "a", "b")
        await store.assign_batch("bat_1", [one.id, two.id])
        claimed = await store.claim_due("crm", now=T0, owner="x", lease_until=T0 + LEASE, limit=9)
        await store.record_attempts([_settle(d, DeliveryStatus.DEAD, T0) for d in claimed], now=T0)
        assert await store.requeue(one.id, now=T0 + 5)
        # Its batch is retired whole: were the others sent again, it would be without it.
        assert await store.batches_of([one.id, two.id]) == {}
        assert await store.batch_members("bat_1") == []

    async def test_purged_deliveries_leave_their_batch(self, store: Store) -> None:
        one, two = await _claimable(store, "a", "b")
        await store.assign_batch("bat_1", [one.id, two.id])
        claimed = await store.claim_due("crm", now=T0, owner="x", lease_until=T0 + LEASE, limit=9)
        await store.record_attempts([_settle(d, DELIVERED, T0) for d in claimed], now=T0)
        assert await store.purge(delivered_before=T0 + 10, dead_before=T0) >= 2
        assert await store.batches_of([one.id, two.id]) == {}

    async def test_ordered_runs_take_the_first_k_of_each_device(self, store: Store) -> None:
        # a0 a1 b2 a3 b4 none5 a6
        made = await _claimable(store, "a", "a", "b", "a", "b", None, "a")
        names = {d.id: d.event.id.removeprefix("evt_batch_") for d in made}

        async def claim(now: float, k: int = 2) -> list[Delivery]:
            return await store.claim_due(
                "crm",
                now=now,
                owner="x",
                lease_until=now + LEASE,
                limit=50,
                ordered=True,
                per_device=k,
            )

        first = await claim(T0)
        # Creation order; at most k of each device; no device id: never held back.
        got = [names[d.id] for d in first]
        assert got == ["a0", "a1", "b2", "b4", "none5"], got
        assert await claim(T0) == []  # the rest of a waits for its run to settle
        by_name = {names[d.id]: d for d in first}
        await store.record_attempts(
            [
                _settle(by_name["a0"], DELIVERED, T0),
                _settle(by_name["a1"], DELIVERED, T0),
                _settle(by_name["b2"], PENDING, T0),  # b's run failed: retry at T0 + 30
                _settle(by_name["b4"], PENDING, T0),
                _settle(by_name["none5"], DELIVERED, T0),
            ],
            now=T0,
        )
        assert [names[d.id] for d in await claim(T0 + 1)] == ["a3", "a6"]
        assert await claim(T0 + 1) == []
        # b's run comes back whole once due; the limit never splits a run out of order.
        again = await store.claim_due(
            "crm",
            now=T0 + 31,
            owner="x",
            lease_until=T0 + LEASE,
            limit=1,
            ordered=True,
            per_device=2,
        )
        assert [names[d.id] for d in again] == ["b2"]
        rest = await claim(T0 + 31)
        assert rest == []  # b4 waits behind b2, which is out
