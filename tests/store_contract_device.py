"""The per-device part of the store conformance suite: presence rows and ordered claims.

:class:`DeviceStoreContract` is a base of ``tests.store_contract.StoreContract``,
so every backend runs it with the same ``store`` / ``reopen_store`` fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bridge.core.events import Event, event_id_for
from bridge.core.presence import Observation, Presence, Transition
from bridge.store.base import Store
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    PresencePolicy,
)

if TYPE_CHECKING:  # store_contract imports this module
    from tests.store_contract import Reopen

__all__ = ["AFTER", "POLICY", "DeviceStoreContract", "announce"]

T0 = 1_800_000_000.0
AFTER = 60.0
LEASE = 300.0


def _event(key: str, device: str, kind: str) -> Event:
    return Event(
        id=f"evt_dev_{key}",
        type=kind,
        timestamp=datetime.fromtimestamp(T0, UTC),
        source=f"mqtt://broker/devices/{device}/events",
        data={"device_id": device},
    )


def announce(transition: Transition) -> Accepted:
    """The event a presence change of a device becomes, for subscription ``crm``."""
    device = transition.device_id
    event = Event(
        id=event_id_for("mqtt://broker", device, transition.key),
        type=f"device.{transition.state.value}",
        timestamp=datetime.fromtimestamp(round(transition.changed_at, 3), UTC),
        source=f"mqtt://broker/presence/{device}",
        data={"device_id": device, "reason": transition.reason},
    )
    return Accepted(event, ("crm",), transition.changed_at)


POLICY = PresencePolicy(AFTER, announce)


def _seen(
    key: str,
    device: str,
    kind: str,
    at: float,
    *,
    says: Presence | None = None,
    retained: bool = False,
    heartbeat: float | None = None,
) -> Accepted:
    observation = Observation(device, at, says, None, retained, heartbeat)
    return Accepted(_event(key, device, kind), ("crm",), at, presence=observation)


async def _ingest(store: Store, items: Sequence[Accepted], now: float) -> list[Delivery]:
    result = await store.ingest(items, [], now=now, owner="a", lease_until=now - 1, presence=POLICY)
    return result.deliveries


def _kinds(deliveries: Sequence[Delivery]) -> list[tuple[str, object]]:
    return [(d.event.type, d.event.data.get("reason")) for d in deliveries]


def _settle(
    delivery: Delivery, status: DeliveryStatus, at: float
) -> tuple[AttemptRecord, AttemptOutcome]:
    record = AttemptRecord(delivery.id, delivery.attempts + 1, at, 1.0, 200, None, None)
    next_at = at + 30 if status is DeliveryStatus.PENDING else None
    return record, AttemptOutcome(status, next_attempt_at=next_at)


class DeviceStoreContract:
    async def test_presence_is_decided_in_ingest(self, store: Store) -> None:
        on, off = Presence.ONLINE, Presence.OFFLINE
        first = await _ingest(
            store,
            [
                _seen("1", "d1", "device.online", T0, says=on),
                _seen("2", "d1", "device.online", T0 + 1, says=on),  # repeat: collapsed
                _seen("3", "d1", "device.offline", T0 + 2, says=off),
                _seen("4", "d1", "session.started", T0 + 3),  # back: seen_again first
            ],
            T0 + 3,
        )
        assert _kinds(first) == [
            ("device.online", None),
            ("device.offline", None),
            ("device.online", "seen_again"),
            ("session.started", None),
        ]
        state = await store.get_presence("d1")
        assert state is not None
        assert (state.state, state.last_seen, state.changed_at) == (on, T0 + 3, T0 + 3)
        # The collapsed event is kept for inspection, delivered to nobody.
        assert await store.get_event("evt_dev_2") is not None
        assert await store.get_presence("nobody") is None

    async def test_retained_status_sets_the_start_only(self, store: Store) -> None:
        start = await _ingest(
            store, [_seen("r1", "d2", "device.online", T0, says=Presence.ONLINE, retained=True)], T0
        )
        assert start == []
        contradicts = await _ingest(
            store,
            [_seen("r2", "d2", "device.offline", T0 + 5, says=Presence.OFFLINE, retained=True)],
            T0 + 5,
        )
        assert _kinds(contradicts) == [("device.offline", None)]

    async def test_timeouts_are_claimed_once_and_survive_a_restart(
        self, store: Store, reopen_store: object
    ) -> None:
        await _ingest(store, [_seen("t1", "d3", "session.started", T0)], T0)
        await _ingest(store, [_seen("t2", "d4", "session.started", T0 + 30)], T0 + 30)
        early = await store.claim_presence_timeouts(
            now=T0 + AFTER, policy=POLICY, owner="a", lease_until=T0 + LEASE, limit=10
        )
        assert early.deliveries == []
        claimed = await store.claim_presence_timeouts(
            now=T0 + AFTER + 1, policy=POLICY, owner="a", lease_until=T0 + LEASE, limit=10
        )
        assert [(d.event.type, d.event.device_id) for d in claimed.deliveries] == [
            ("device.offline", "d3")
        ]
        again = await store.claim_presence_timeouts(
            now=T0 + AFTER + 2, policy=POLICY, owner="b", lease_until=T0 + LEASE, limit=10
        )
        assert again.deliveries == []
        state = await store.get_presence("d3")
        assert state is not None
        assert (state.state, state.changed_at, state.reason) == (
            Presence.OFFLINE,
            T0 + AFTER,
            "heartbeat_timeout",
        )
        back = await _ingest(store, [_seen("t3", "d3", "session.ended", T0 + 200)], T0 + 200)
        assert _kinds(back) == [("device.online", "seen_again"), ("session.ended", None)]

    async def test_only_announced_heartbeats_time_out_without_a_default(
        self, store: Store, reopen_store: Reopen
    ) -> None:
        """With no default timeout, a device times out after the heartbeat it announced
        (kept in its row across a restart); a Last-Will device never does."""
        announced_only = PresencePolicy(None, announce)
        online = Presence.ONLINE
        await _ingest(store, [_seen("h1", "will", "device.online", T0, says=online)], T0)
        beat = _seen("h2", "beat", "device.online", T0, says=online, heartbeat=10.0)
        await _ingest(store, [beat], T0)
        state = await store.get_presence("beat")
        assert state is not None
        assert state.heartbeat == 10.0
        reopened = await reopen_store(store, owner="")
        early = await reopened.claim_presence_timeouts(
            now=T0 + 10, policy=announced_only, owner="a", lease_until=T0 + LEASE, limit=10
        )
        assert early.deliveries == []
        claimed = await reopened.claim_presence_timeouts(
            now=T0 + 1e6, policy=announced_only, owner="a", lease_until=T0 + LEASE, limit=10
        )
        assert [(d.event.type, d.event.device_id) for d in claimed.deliveries] == [
            ("device.offline", "beat")
        ]
        gone = await reopened.get_presence("beat")
        assert gone is not None
        assert (gone.state, gone.changed_at) == (Presence.OFFLINE, T0 + 10)
        will = await reopened.get_presence("will")
        assert will is not None
        assert will.state is online
        # The configured default applies to the others once there is one.
        everyone = await reopened.claim_presence_timeouts(
            now=T0 + 1e6, policy=POLICY, owner="a", lease_until=T0 + LEASE, limit=10
        )
        assert [d.event.device_id for d in everyone.deliveries] == ["will"]

    async def test_ordered_claims_are_fifo_per_device(self, store: Store) -> None:
        items = [
            Accepted(_event(f"o{i}", device, "session.started"), ("crm",), T0)
            for i, device in enumerate(["a", "a", "b", "a", "b"])
        ]
        await store.ingest(items, [], now=T0, owner="x", lease_until=T0 - 1)

        async def claim(now: float) -> list[str]:
            got = await store.claim_due(
                "crm", now=now, owner="x", lease_until=now + LEASE, limit=10, ordered=True
            )
            return [d.event.id.removeprefix("evt_dev_") for d in got]

        first = await store.claim_due(
            "crm", now=T0, owner="x", lease_until=T0 + LEASE, limit=10, ordered=True
        )
        assert [d.event.id for d in first] == ["evt_dev_o0", "evt_dev_o2"]
        assert await claim(T0) == []  # each device's head is leased
        assert await store.next_due_at("crm", ordered=True) is None
        by_id = {d.event.id: d for d in first}
        await store.record_attempts(
            [
                _settle(by_id["evt_dev_o0"], DeliveryStatus.DELIVERED, T0),
                _settle(by_id["evt_dev_o2"], DeliveryStatus.PENDING, T0),  # retry at T0 + 30
            ],
            now=T0,
        )
        assert await claim(T0 + 1) == ["o1"]  # b waits for its retry, a moves on
        assert await store.next_due_at("crm", ordered=True) == T0 + 30
        assert await claim(T0 + 31) == ["o2"]
        # Unordered claims ignore devices.
        rest = await store.claim_due("crm", now=T0 + LEASE * 3, owner="y", lease_until=T0, limit=10)
        assert {d.event.id for d in rest} >= {"evt_dev_o3", "evt_dev_o4"}
