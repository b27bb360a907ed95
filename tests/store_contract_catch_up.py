"""Catching up and sending now: the store conformance part (see bridge.store.catchup).

Outcomes come from the real retry schedule (:func:`bridge.core.retry.schedule_after`),
so what the store keeps is what the dispatcher writes. :class:`CatchUpStoreContract`
is a base of ``tests.store_contract.StoreContract`` and needs its ``store`` fixture.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from bridge.config import RetrySettings
from bridge.core.events import Event
from bridge.core.outcomes import AttemptResult
from bridge.core.retry import schedule_after
from bridge.store.base import Store
from bridge.store.catchup import SendNow
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    SubscriptionState,
)

__all__ = ["CatchUpStoreContract"]

T0 = 1_800_000_000.0
RETRY = RetrySettings(schedule=[5.0, 300.0, 1800.0], jitter=0.0)
REFUSED = AttemptResult.failure("connection refused", latency_ms=1.0)
_NUMBERS = itertools.count()  # event ids: every call its own events
DELIVERED = AttemptResult("delivered", 200, 1.0, None, None, None, None, None)


def _answer(status: int, retry_after: float | None = None) -> AttemptResult:
    return AttemptResult("failed", status, 2.0, f"HTTP {status}", None, None, retry_after, None)


def _event(n: int, device: str) -> Event:
    return Event(
        id=f"evt_catchup{n:05d}",
        type="session.started",
        timestamp=datetime.fromtimestamp(T0, UTC),
        source=f"mqtt://broker/devices/{device}/events",
        data={"device_id": device},
    )


async def _deliveries(
    store: Store, count: int, subscription: str = "crm", *, lease_until: float = T0 - 1
) -> list[Delivery]:
    """``count`` pending deliveries created at T0 (oldest first), their lease already over."""
    numbers = [next(_NUMBERS) for _ in range(count)]
    items = [Accepted(_event(n, f"dev-{n}"), (subscription,), T0) for n in numbers]
    result = await store.ingest(items, [], now=T0, owner="bridge-a", lease_until=lease_until)
    return result.deliveries


async def _attempt(store: Store, delivery: Delivery, result: AttemptResult, at: float) -> Delivery:
    """One attempt of ``delivery`` at ``at``, recorded as the dispatcher records it."""
    outcome = (
        AttemptOutcome(DeliveryStatus.DELIVERED)
        if result.outcome == "delivered"
        else schedule_after(
            result, steps=delivery.retry_step, early=delivery.early, retry=RETRY, now=at, rand=0.5
        )
    )
    record = AttemptRecord(
        delivery.id, delivery.attempts + 1, at, 2.0, result.status_code, result.error, None
    )
    await store.record_attempts([(record, outcome)], now=at)
    found = await store.get_delivery(delivery.id)
    assert found is not None
    return found


async def _streak(store: Store, since: float) -> None:
    await store.save_subscription_state(SubscriptionState("crm", failing_since=since))


async def _due(store: Store, delivery: Delivery) -> float | None:
    found = await store.get_delivery(delivery.id)
    assert found is not None
    return found.next_attempt_at


class CatchUpStoreContract:
    async def test_the_schedule_step_is_kept_apart_from_the_attempts(self, store: Store) -> None:
        (delivery,) = await _deliveries(store, 1)
        once = await _attempt(store, delivery, REFUSED, T0 + 1)
        twice = await _attempt(store, once, _answer(503), T0 + 7)
        assert (twice.attempts, twice.retry_step, twice.early) == (2, 2, False)
        assert twice.next_attempt_at == T0 + 7 + 300

    async def test_the_streak_ends_once_and_marks_the_catch_up(self, store: Store) -> None:
        await _streak(store, T0 + 1)
        assert await store.end_streak("crm", now=T0 + 10)
        assert not await store.end_streak("crm", now=T0 + 11)  # another instance, later
        state = (await store.subscription_states())["crm"]
        assert (state.failing_since, state.last_success, state.catching_up) == (
            None,
            T0 + 10,
            T0 + 10,
        )
        assert not await store.end_streak("nobody", now=T0 + 10)
        # Saving the whole state (as a lane does) leaves the mark to catch_up.
        await store.save_subscription_state(SubscriptionState("crm", last_success=T0 + 12))
        assert (await store.subscription_states())["crm"].catching_up == T0 + 10

    async def test_catch_up_releases_only_what_an_endpoint_failure_held(self, store: Store) -> None:
        refused, failed, paused, refused_4xx, later = await _deliveries(store, 5)
        (other,) = await _deliveries(store, 1, "ops")
        waiting = {}
        for delivery, result in [
            (refused, REFUSED),
            (failed, _answer(500)),
            (paused, _answer(503, retry_after=3600.0)),
            (refused_4xx, _answer(400)),
            (other, REFUSED),
        ]:
            once = await _attempt(store, delivery, result, T0 + 1)
            waiting[delivery.id] = await _attempt(store, once, result, T0 + 7)
        await _streak(store, T0 + 1)
        assert await store.end_streak("crm", now=T0 + 10)
        # A failure recorded after the streak ended belongs to another streak.
        last = await _attempt(store, later, REFUSED, T0 + 12)
        chunk = await store.catch_up("crm", now=T0 + 15)
        assert (chunk.released, chunk.done) == (2, True)
        for delivery in (refused, failed):
            found = await store.get_delivery(delivery.id)
            assert found is not None
            assert (found.next_attempt_at, found.early, found.retry_step) == (T0 + 15, True, 2)
        for delivery in (paused, refused_4xx, other):
            assert await _due(store, delivery) == waiting[delivery.id].next_attempt_at
        assert await _due(store, later) == last.next_attempt_at
        assert (await store.subscription_states())["crm"].catching_up is None
        assert (await store.catch_up("crm", now=T0 + 16)).released == 0  # nothing marked

    async def test_a_failed_early_attempt_keeps_its_step(self, store: Store) -> None:
        (delivery,) = await _deliveries(store, 1)
        for at in (T0 + 1, T0 + 7):
            delivery = await _attempt(store, delivery, REFUSED, at)
        await _streak(store, T0 + 1)
        await store.end_streak("crm", now=T0 + 10)
        await store.catch_up("crm", now=T0 + 11)
        early = await store.get_delivery(delivery.id)
        assert early is not None and early.early
        again = await _attempt(store, early, REFUSED, T0 + 12)
        assert (again.attempts, again.retry_step, again.early) == (3, 2, False)
        assert again.next_attempt_at == T0 + 12 + 300  # the same delay once more
        normal = await _attempt(store, again, REFUSED, T0 + 400)
        assert (normal.retry_step, normal.next_attempt_at) == (3, T0 + 400 + 1800)

    async def test_catch_up_goes_oldest_first_in_chunks(self, store: Store) -> None:
        deliveries = await _deliveries(store, 5)
        for delivery in deliveries:
            await _attempt(store, delivery, REFUSED, T0 + 1)
        await _streak(store, T0 + 1)
        await store.end_streak("crm", now=T0 + 2)
        cursor = None
        released: list[list[str]] = []
        for _ in range(5):
            chunk = await store.catch_up("crm", now=T0 + 3, after=cursor, limit=2)
            cursor = chunk.cursor
            due = sorted([d.id for d in deliveries if await _due(store, d) == T0 + 3])
            released.append(due)
            if chunk.done:
                break
        # Created together: ties go by id (ids sort by creation to the millisecond).
        ids = sorted(d.id for d in deliveries)
        assert released == [sorted(ids[:2]), sorted(ids[:4]), ids]

    async def test_a_new_streak_stops_the_catch_up(self, store: Store) -> None:
        (delivery,) = await _deliveries(store, 1)
        waiting = await _attempt(store, delivery, REFUSED, T0 + 1)
        await _streak(store, T0 + 1)
        await store.end_streak("crm", now=T0 + 2)
        await _streak(store, T0 + 3)  # failing again before the catch-up ran
        chunk = await store.catch_up("crm", now=T0 + 4)
        assert (chunk.released, chunk.done) == (0, True)
        assert await _due(store, delivery) == waiting.next_attempt_at
        assert (await store.subscription_states())["crm"].catching_up is None

    async def test_send_now_never_touches_a_live_lease(self, store: Store) -> None:
        (held,) = await _deliveries(store, 1, lease_until=T0 + 60)
        assert await store.send_now(held.id, now=T0 + 1) is SendNow.IN_FLIGHT
        # The lease ran out (its holder keeps no heartbeat row): due, its token kept.
        assert await store.send_now(held.id, now=T0 + 61) is SendNow.DUE
        found = await store.get_delivery(held.id)
        assert found is not None and found.lease_token == held.lease_token
        waiting = await _attempt(store, found, REFUSED, T0 + 62)
        assert await store.send_now(held.id, now=T0 + 63) is SendNow.DUE
        found = await store.get_delivery(held.id)
        assert found is not None
        assert (found.next_attempt_at, found.early) == (T0 + 63, True)
        assert found.lease_token == waiting.lease_token
        assert await store.send_now("dlv_unknown", now=T0 + 63) is None
        await _attempt(store, found, DELIVERED, T0 + 64)
        assert await store.send_now(held.id, now=T0 + 65) is SendNow.FINISHED

    async def test_send_now_on_a_due_delivery_is_not_early(self, store: Store) -> None:
        (delivery,) = await _deliveries(store, 1)
        assert await store.send_now(delivery.id, now=T0 + 1) is SendNow.DUE
        found = await store.get_delivery(delivery.id)
        assert found is not None and (found.next_attempt_at, found.early) == (T0, False)

    async def test_flush_makes_a_subscription_due_but_what_is_in_flight(self, store: Store) -> None:
        waiting = await _deliveries(store, 3)
        for delivery in waiting:
            await _attempt(store, delivery, _answer(400), T0 + 1)
        (held,) = await _deliveries(store, 1, lease_until=T0 + 60)
        (other,) = await _deliveries(store, 1, "ops")
        other_due = (await _attempt(store, other, REFUSED, T0 + 1)).next_attempt_at
        assert await store.flush("crm", now=T0 + 2) == 3
        for delivery in waiting:
            found = await store.get_delivery(delivery.id)
            assert found is not None and (found.next_attempt_at, found.early) == (T0 + 2, True)
        assert await _due(store, held) == T0  # leased: untouched
        assert await _due(store, other) == other_due
        assert await store.flush("crm", now=T0 + 3) == 0

    async def test_a_broker_counter_is_kept_per_broker(self, store: Store) -> None:
        # Not a catch-up, but the same kind of shared, compared-once state (bridge.ingest.drops).
        name = "publish/messages/dropped"
        assert await store.note_broker_counter("mqtt://a:1883", name, 5, now=T0) is None
        assert await store.note_broker_counter("mqtt://a:1883", name, 9, now=T0 + 1) == 5
        assert await store.note_broker_counter("mqtt://a:1883", name, 9, now=T0 + 2) == 9
        assert await store.note_broker_counter("mqtt://b:1883", name, 1, now=T0) is None
        assert await store.note_broker_counter("mqtt://a:1883", name, 2, now=T0 + 3) == 9
