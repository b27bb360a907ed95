"""Pipe replies in the outbox: the store conformance part (see bridge.store.outbox).

A reply rides on the attempt record it answers and is committed with it, only
while the record's lease token is current. :class:`ReplyStoreContract` is a
base of ``tests.store_contract.StoreContract`` and needs its ``store`` fixture.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bridge.core.events import Event
from bridge.store.base import Store
from bridge.store.outbox import OutboxKind, OutboxMessage, OutboxStatus
from bridge.store.rows import Accepted, AttemptOutcome, AttemptRecord, Delivery, DeliveryStatus

__all__ = ["ReplyStoreContract"]

T0 = 1_800_000_000.0
LEASE = 300.0


def _event(n: int) -> Event:
    return Event(
        id=f"evt_reply{n:05d}",
        type="device.online",
        timestamp=datetime.fromtimestamp(T0, UTC),
        source="mqtt://broker/devices/dev-1/status",
        data={"device_id": "dev-1"},
    )


async def _deliveries(store: Store, count: int) -> list[Delivery]:
    result = await store.ingest(
        [Accepted(_event(n), ("pipe",), T0, None, False) for n in range(count)],
        [],
        now=T0,
        owner="bridge-a",
        lease_until=T0 + LEASE,
    )
    return result.deliveries


def _reply(delivery: Delivery, n: int, correlation: bytes | None = b"\x00req-1") -> OutboxMessage:
    return OutboxMessage(
        id=f"rpl_{delivery.id}_{n}",
        source="pipe",
        topic="replies/dev-1",
        payload=b"ack %d" % n,
        created_at=T0 + 1,
        max_age=30.0,
        kind=OutboxKind.REPLY,
        correlation=correlation,
        content_type="text/plain" if correlation else None,
        delivery_id=delivery.id,
    )


def _record(delivery: Delivery, reply: OutboxMessage | None, token: int | None) -> AttemptRecord:
    return AttemptRecord(
        delivery.id, delivery.attempts + 1, T0 + 1, 3.0, 200, None, "ok", token, reply
    )


class ReplyStoreContract:
    async def test_a_reply_is_committed_with_its_attempt(self, store: Store) -> None:
        first, second = await _deliveries(store, 2)
        answered, bare = _reply(first, 1), _reply(second, 1, correlation=None)
        results = [
            (_record(first, answered, first.lease_token), AttemptOutcome(DeliveryStatus.DELIVERED)),
            (_record(second, bare, second.lease_token), AttemptOutcome(DeliveryStatus.DELIVERED)),
        ]
        await store.record_attempts(results, now=T0 + 1)
        # Recording the same attempt again (a retried commit) stores no second reply.
        await store.record_attempts(results[:1], now=T0 + 2)
        stored = await store.get_outbox(answered.id)
        assert stored is not None
        assert (stored.kind, stored.status, stored.source) == (
            OutboxKind.REPLY,
            OutboxStatus.PENDING,
            "pipe",
        )
        assert (stored.correlation, stored.content_type) == (b"\x00req-1", "text/plain")
        assert stored.publish_correlation == b"\x00req-1"
        assert (stored.delivery_id, stored.payload, stored.expires_at) == (
            first.id,
            b"ack 1",
            T0 + 31,
        )
        other = await store.get_outbox(bare.id)
        assert other is not None
        assert (other.correlation, other.publish_correlation, other.content_type) == (
            None,
            None,
            None,
        )
        # Replies are claimed like inbound messages: one topic, in commit order.
        claim = await store.claim_outbox(now=T0 + 2, owner="a", lease_until=T0 + 60, limit=10)
        assert [m.id for m in claim.messages] == [answered.id]
        page, _ = await store.list_outbox(status=None, source="pipe", cursor=None, limit=10)
        assert [m.id for m in page] == [bare.id, answered.id]

    async def test_a_fenced_out_result_brings_no_reply(self, store: Store) -> None:
        (delivery,) = await _deliveries(store, 1)
        await store.release([delivery.id])
        (taken,) = await store.claim_due(
            "pipe", now=T0 + 1, owner="bridge-b", lease_until=T0 + LEASE, limit=1
        )
        assert taken.lease_token != delivery.lease_token
        late = _reply(delivery, 1)
        await store.record_attempts(
            [
                (
                    _record(delivery, late, delivery.lease_token),
                    AttemptOutcome(DeliveryStatus.DELIVERED),
                )
            ],
            now=T0 + 2,
        )
        assert await store.get_outbox(late.id) is None
        # The current holder's answer goes in.
        current = replace(_reply(taken, 2), delivery_id=taken.id)
        await store.record_attempts(
            [
                (
                    _record(taken, current, taken.lease_token),
                    AttemptOutcome(DeliveryStatus.DELIVERED),
                )
            ],
            now=T0 + 3,
        )
        assert await store.get_outbox(current.id) is not None
