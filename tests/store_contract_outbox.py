"""The MQTT outbox part of the store conformance suite (see bridge.store.outbox).

:class:`OutboxStoreContract` is a base of ``tests.store_contract.StoreContract``:
it needs the fixtures ``store`` and ``instance`` (see
``tests.store_contract_leases``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.errors import StoreError
from bridge.store.base import Store
from bridge.store.outbox import (
    OutboxMessage,
    OutboxOutcome,
    OutboxStatus,
    ReplayNote,
)
from tests.store_contract_leases import Instance
from tests.support.waiting import wait_until

__all__ = ["OutboxStoreContract"]

T0 = 1_800_000_000.0
LEASE = 300.0
HOUR = 3600.0
PENDING, PUBLISHED, DEAD = OutboxStatus.PENDING, OutboxStatus.PUBLISHED, OutboxStatus.DEAD


def _message(n: int, topic: str = "devices/dev-1/commands", *, at: float = T0) -> OutboxMessage:
    return OutboxMessage(
        id=f"inb_{n:04d}",
        source="helpdesk",
        topic=topic,
        payload=b'{"n": %d}' % n,
        created_at=at,
        max_age=HOUR,
    )


async def _accept(store: Store, *messages: OutboxMessage) -> None:
    for message in messages:
        assert await store.accept_inbound(message, None, now=message.created_at)


async def _claim(store: Store, owner: str = "bridge-a", *, at: float = T0) -> list[OutboxMessage]:
    claim = await store.claim_outbox(now=at, owner=owner, lease_until=at + LEASE, limit=10)
    return claim.messages


def _published(message: OutboxMessage) -> OutboxOutcome:
    return OutboxOutcome(message.id, message.lease_token, published=True)


class OutboxStoreContract:
    async def test_an_accepted_message_is_stored_with_its_replay_id(self, store: Store) -> None:
        note = ReplayNote("msg-1", expires_at=T0 + 600)
        assert await store.accept_inbound(_message(1), note, now=T0)
        # The same replay id again, unexpired: refused, and nothing stored.
        assert not await store.accept_inbound(_message(2), note, now=T0 + 1)
        assert await store.get_outbox("inb_0002") is None
        # Another source's id of the same value is another request.
        other = replace(_message(3), source="other")
        assert await store.accept_inbound(other, note, now=T0 + 1)
        # Once expired, the id may be used again.
        assert await store.accept_inbound(_message(4), note, now=T0 + 601)
        found = await store.get_outbox("inb_0001")
        assert found is not None
        assert (found.status, found.attempts, found.topic) == (PENDING, 0, _message(1).topic)
        assert found.payload == b'{"n": 1}'
        assert found.expires_at == T0 + HOUR

    async def test_one_message_per_topic_is_out_at_a_time_in_order(self, store: Store) -> None:
        a1, a2 = _message(1, "devices/a/commands"), _message(2, "devices/a/commands")
        b1 = _message(3, "devices/b/commands")
        await _accept(store, a1, a2, b1)
        first = await _claim(store)
        assert [m.id for m in first] == [a1.id, b1.id]
        # a2 waits behind a1, leased or not.
        assert await _claim(store, at=T0 + 1) == []
        assert await store.next_outbox_due() is None
        await store.record_outbox([_published(first[0])], now=T0 + 2)
        assert await store.next_outbox_due() == T0
        (second,) = await _claim(store, at=T0 + 3)
        assert second.id == a2.id
        done = await store.get_outbox(a1.id)
        assert done is not None
        assert (done.status, done.attempts, done.published_at) == (PUBLISHED, 1, T0 + 2)

    async def test_a_failed_attempt_waits_for_its_retry_and_keeps_the_topic(
        self, store: Store
    ) -> None:
        a1, a2 = _message(1), _message(2)
        await _accept(store, a1, a2)
        (claimed,) = await _claim(store)
        failed = OutboxOutcome(claimed.id, claimed.lease_token, False, "refused (0x87)", T0 + 5)
        await store.record_outbox([failed], now=T0 + 1)
        assert await _claim(store, at=T0 + 4) == []
        assert await store.next_outbox_due() == T0 + 5
        (again,) = await _claim(store, at=T0 + 5)
        assert again.id == a1.id
        assert (again.attempts, again.last_error) == (1, "refused (0x87)")

    async def test_an_outcome_under_an_old_lease_token_changes_nothing(self, store: Store) -> None:
        await _accept(store, _message(1))
        (claimed,) = await _claim(store)
        await store.release_outbox(owner="bridge-a", ids=[claimed.id])
        (retaken,) = await _claim(store, "bridge-b", at=T0 + 1)
        assert retaken.lease_token != claimed.lease_token
        await store.record_outbox([_published(claimed)], now=T0 + 2)
        still = await store.get_outbox(claimed.id)
        assert still is not None
        assert (still.status, still.attempts) == (PENDING, 0)
        await store.record_outbox([_published(retaken)], now=T0 + 3)
        done = await store.get_outbox(claimed.id)
        assert done is not None
        assert done.status is PUBLISHED

    async def test_a_message_past_its_max_age_dies_unpublished_and_can_be_requeued(
        self, store: Store
    ) -> None:
        old, young = _message(1), _message(2, "devices/b/commands", at=T0 + HOUR)
        await _accept(store, old, young)
        claim = await store.claim_outbox(
            now=T0 + HOUR + 1, owner="bridge-a", lease_until=T0 + 2 * HOUR, limit=0
        )
        assert [m.id for m in claim.expired] == [old.id]
        assert claim.messages == []
        dead = await store.get_outbox(old.id)
        assert dead is not None
        assert (dead.status, dead.dead_reason, dead.attempts) == (DEAD, "too_old", 0)
        assert not await store.requeue_outbox(young.id, now=T0 + HOUR + 2)  # still pending
        assert await store.requeue_outbox(old.id, now=T0 + HOUR + 2)
        again = await store.get_outbox(old.id)
        assert again is not None
        assert (again.status, again.dead_reason, again.age_start) == (PENDING, None, T0 + HOUR + 2)
        claimed = await _claim(store, at=T0 + HOUR + 3)
        assert {m.id for m in claimed} == {old.id, young.id}
        assert not await store.requeue_outbox("inb_unknown", now=T0)

    async def test_a_failure_with_no_time_left_is_dead(self, store: Store) -> None:
        await _accept(store, _message(1))
        (claimed,) = await _claim(store)
        gone = OutboxOutcome(claimed.id, claimed.lease_token, False, "not connected", None)
        await store.record_outbox([gone], now=T0 + HOUR)
        dead = await store.get_outbox(claimed.id)
        assert dead is not None
        assert (dead.status, dead.dead_reason, dead.attempts) == (DEAD, "too_old", 1)
        assert dead.last_error == "not connected"

    async def test_list_pages_newest_first_with_filters_and_stats(self, store: Store) -> None:
        await _accept(store, *(_message(n, f"devices/d{n}/commands") for n in range(1, 6)))
        claimed = await _claim(store)
        await store.record_outbox([_published(claimed[0])], now=T0 + 1)
        page, cursor = await store.list_outbox(status=None, source=None, cursor=None, limit=3)
        assert [m.id for m in page] == ["inb_0005", "inb_0004", "inb_0003"]
        assert cursor is not None
        rest, end = await store.list_outbox(status=None, source=None, cursor=cursor, limit=3)
        assert [m.id for m in rest] == ["inb_0002", "inb_0001"]
        assert end is None
        done, _ = await store.list_outbox(status=PUBLISHED, source=None, cursor=None, limit=9)
        assert [m.id for m in done] == ["inb_0001"]
        none, _ = await store.list_outbox(status=None, source="other", cursor=None, limit=9)
        assert none == []
        with pytest.raises(StoreError):
            await store.list_outbox(status=None, source=None, cursor="bogus!", limit=3)
        stats = await store.outbox_stats()
        assert stats.counts == {"pending": 4, "published": 1, "dead": 0}
        assert stats.oldest_pending == T0

    async def test_purge_drops_finished_messages_only(self, store: Store) -> None:
        await _accept(store, _message(1), _message(2, "devices/b/commands"))
        claimed = await _claim(store)
        await store.record_outbox([_published(claimed[0])], now=T0 + 1)
        assert await store.purge_outbox(published_before=T0 + 2, dead_before=T0 + 2) == 1
        assert await store.get_outbox(claimed[0].id) is None
        assert await store.get_outbox(claimed[1].id) is not None

    async def test_a_live_holder_keeps_its_claims_and_a_dead_ones_are_taken_over(
        self, instance: Instance
    ) -> None:
        a = await instance("bridge-a")
        b = await instance("bridge-b", takeover_after=1.5)
        await _accept(a, _message(1))
        (held,) = await _claim(a, "bridge-a")
        await a.heartbeat()
        assert await _claim(b, "bridge-b", at=T0 + LEASE + 1) == []
        taken: list[OutboxMessage] = []

        async def taken_over() -> bool:
            taken.extend(await _claim(b, "bridge-b", at=T0 + 1))
            return bool(taken)

        await wait_until(taken_over, timeout=15, interval=0.1, message="takeover")
        assert [m.id for m in taken] == [held.id]
        assert taken[0].lease_token != held.lease_token

    async def test_a_restarted_owner_releases_its_claims(self, store: Store) -> None:
        await _accept(store, _message(1))
        assert len(await _claim(store, "bridge-a")) == 1
        assert await _claim(store, "bridge-a", at=T0 + 1) == []
        await store.release_outbox(owner="bridge-a")
        assert len(await _claim(store, "bridge-a", at=T0 + 2)) == 1
