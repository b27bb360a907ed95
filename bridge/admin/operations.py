"""What an operator does to a running bridge: test pings, retries, replays, alerts, reload.

The admin API and the CLI (through the API) call these; the dispatcher calls
:meth:`Operations.alert`. Each action goes through the store, then tells the
dispatcher to look (``poke``), so what the operator starts is as durable as
any other delivery.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from bridge.admin.parts import BridgeParts
from bridge.admin.reload import ReloadResult, reload_bridge
from bridge.config import Subscription
from bridge.core.events import Event, new_event_id
from bridge.errors import Conflict, NotFound, OperatorError
from bridge.observe.logs import get_logger
from bridge.store.catchup import SendNow
from bridge.store.rows import Accepted, AttemptOutcome, AttemptRecord, Delivery, DeliveryStatus

if TYPE_CHECKING:
    from bridge.admin.accounts.managed import ManagedSubscriptions

__all__ = [
    "ALERT_KINDS",
    "Operations",
    "ReloadResult",
    "ReplayRequest",
    "ServedBridge",
    "TestPing",
]

log = get_logger("hookbridge.operations")

ALERT_KINDS = (
    "subscription_disabled",
    "circuit_opened",
    "delivery_dead",
    "store_refused",
    "store_log_large",
    "broker_dropped",
)
"""Alert kinds of the dispatcher, ingest and the store's watch; each becomes an event
of type ``bridge.<kind>``."""

# A window replay walks the store page by page; this bounds one request.
_REPLAY_PAGE = 500
_REPLAY_MAX_PAGES = 200


@dataclass(frozen=True, slots=True)
class TestPing:
    """What one test ping did: the attempt's answer, for the operator to read."""

    delivery_id: str
    event_id: str
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """Replay by ``event_ids``, or the deliveries of ``subscription`` created in a window."""

    event_ids: Sequence[str] = ()
    subscription: str | None = None
    since: float | None = None
    until: float | None = None
    status: DeliveryStatus | None = None
    target: str | None = None  # another subscription to send to
    as_new: bool = False  # a fresh event id, for receivers that drop a known id
    limit: int = 1000


class Operations:
    def __init__(self, bridge: BridgeParts) -> None:
        self._bridge = bridge

    @property
    def _source(self) -> str:
        return f"hookbridge://{self._bridge.owner}"

    def subscription(self, name: str, scope: str | None = None) -> Subscription:
        """The running subscription ``name``; with ``scope`` (an account), only one of that
        account's: another's answers as if it did not exist."""
        found = self._bridge.settings.subscription(name)
        if found is None or (scope is not None and self._bridge.managed.owner(name) != scope):
            raise NotFound(f"no subscription named '{name}'")
        return found

    def _owned(self, names: Sequence[str], scope: str | None) -> list[str]:
        """Those of ``names`` that ``scope`` (an account; None: the operator) may touch."""
        if scope is None:
            return list(names)
        return [name for name in names if self._bridge.managed.owner(name) == scope]

    # -- alerts -----------------------------------------------------------------------

    async def alert(self, kind: str, subscription: str, details: dict[str, object]) -> None:
        """Turn a dispatcher alert into a ``bridge.<kind>`` event for the ops subscriptions.

        Routed like any event, but never to the subscription it is about: an
        endpoint that is down must not be sent alerts about itself (a loop).
        """
        now = time.time()
        data: dict[str, object] = {"subscription": subscription, "reason": ""}
        data.update({k: v for k, v in details.items() if v is not None})
        data["reason"] = str(data.get("reason") or kind)
        event = Event(
            id=new_event_id(datetime.fromtimestamp(now, UTC), os.urandom(10)),
            type=f"bridge.{kind}",
            timestamp=datetime.fromtimestamp(now, UTC),
            source=self._source,
            data=data,
        )
        targets = [s.name for s in self._bridge.router.match(event) if s.name != subscription]
        log.warning("alert", kind=kind, subscription=subscription, notified=targets)
        if not targets:
            return
        owners = self._bridge.router.owners
        await self._bridge.store.create_deliveries(event, targets, now=now, owners=owners)
        for name in targets:
            self._bridge.dispatcher.poke(name)

    # -- test ping ----------------------------------------------------------------------

    async def test_ping(self, name: str, scope: str | None = None) -> TestPing:
        """Send a ``bridge.test`` event to one subscription now, bypassing its queue.

        It is stored with a delivery leased to this bridge (so the dispatcher
        leaves it alone), sent once even if the subscription is disabled (that
        is how an operator checks a repaired endpoint), and recorded: delivered,
        or dead with reason ``test_failed`` (a test is not retried). ``scope``: the
        account asking (its own subscriptions only).
        """
        sub = self.subscription(name, scope)
        bridge = self._bridge
        now = time.time()
        moment = datetime.fromtimestamp(now, UTC)
        event = Event(
            id=new_event_id(moment, os.urandom(10)),
            type="bridge.test",
            timestamp=moment,
            source=self._source,
            data={"message": "test event from HookBridge", "subscription": name},
            account=bridge.managed.owner(name) or None,
        )
        stored = await bridge.store.ingest(
            [Accepted(event=event, subscriptions=(name,), received_at=now)],
            [],
            now=now,
            owner=bridge.owner,
            lease_until=now + bridge.settings.store.lease,
            owners=bridge.router.owners,
        )
        delivery = stored.deliveries[0]
        result = await bridge.sender.attempt(sub, event, delivery_id=delivery.id, attempt=1)
        delivered = result.outcome == "delivered"
        outcome = (
            AttemptOutcome(DeliveryStatus.DELIVERED)
            if delivered
            else AttemptOutcome(DeliveryStatus.DEAD, reason="test_failed")
        )
        record = AttemptRecord(
            delivery_id=delivery.id,
            attempt=1,
            started_at=now,
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        await bridge.store.record_attempts([(record, outcome)], now=time.time())
        bridge.metrics.deliveries.labels(name, result.outcome).inc()
        bridge.metrics.attempt_latency.labels(name).observe(result.latency_ms / 1000)
        return TestPing(
            delivery_id=delivery.id,
            event_id=event.id,
            outcome=result.outcome,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )

    # -- retry and replay ---------------------------------------------------------------

    async def retry(self, delivery_id: str, scope: str | None = None) -> Delivery:
        """Send a delivery now: a pending one becomes due (its next attempt, should it
        fail, keeps its schedule step), a dead or delivered one is requeued. A pending
        one whose attempt is in flight (a live lease) is a conflict: its lease and
        fencing token are left alone, and its attempt decides. ``scope``: the account
        asking (the deliveries of its own subscriptions only)."""
        store = self._bridge.store
        delivery = await store.get_delivery(delivery_id)
        if delivery is None or (scope is not None and delivery.account != scope):
            raise NotFound(f"no delivery '{delivery_id}'")
        answer = SendNow.FINISHED
        if delivery.status is DeliveryStatus.PENDING:
            answer = await store.send_now(delivery_id, now=time.time()) or SendNow.FINISHED
        if answer is SendNow.IN_FLIGHT:
            raise Conflict(f"delivery '{delivery_id}' is in flight: its attempt decides")
        if answer is SendNow.FINISHED:  # dead or delivered (perhaps just now)
            await store.requeue(delivery_id, now=time.time())
        self._bridge.dispatcher.poke(delivery.subscription)
        found = await store.get_delivery(delivery_id)
        return found if found is not None else delivery

    async def flush(self, name: str, scope: str | None = None) -> int:
        """Make every pending delivery of a subscription due now, but those whose attempt
        is in flight; returns how many. A failed attempt of theirs keeps its step.
        ``scope``: the account asking (its own subscriptions only)."""
        self.subscription(name, scope)
        count = await self._bridge.store.flush(name, now=time.time())
        self._bridge.dispatcher.poke(name)
        log.info("flush", subscription=name, deliveries=count)
        return count

    async def replay(self, request: ReplayRequest, scope: str | None = None) -> list[Delivery]:
        """Create new deliveries for stored events; returns them (they are due now).

        Without a ``target`` an event replayed by id goes to the subscriptions
        that want it under the current configuration, and a window replay goes
        back to its own subscription. With ``scope`` (an account) only that
        account's events, to that account's subscriptions.
        """
        if bool(request.event_ids) == (request.subscription is not None):
            raise OperatorError("give either event_ids or a subscription with a time window")
        if request.target is not None:
            self.subscription(request.target, scope)
        events = (
            await self._events_by_id(request.event_ids, scope)
            if request.event_ids
            else await self._events_in_window(request, scope)
        )
        target_owner = (
            None if request.target is None else self._bridge.managed.owner(request.target)
        )
        if target_owner and any(event.account != target_owner for event in events):
            # An account's subscription gets that account's events, replayed or not.
            raise Conflict(f"'{request.target}' belongs to an account: it takes its events only")
        now = time.time()
        created: list[Delivery] = []
        for event in events:
            if request.target is not None:
                targets = [request.target]
            elif request.subscription is not None:
                targets = [request.subscription]
            else:
                targets = self._owned([s.name for s in self._bridge.router.match(event)], scope)
            if not targets:
                continue
            sent = (
                event.with_id(new_event_id(datetime.fromtimestamp(now, UTC), os.urandom(10)))
                if request.as_new
                else event
            )
            created += await self._bridge.store.create_deliveries(
                sent, targets, now=now, owners=self._bridge.router.owners
            )
        for name in {d.subscription for d in created}:
            self._bridge.dispatcher.poke(name)
        log.info("replay", deliveries=len(created), events=len(events), as_new=request.as_new)
        return created

    async def _events_by_id(self, event_ids: Sequence[str], scope: str | None) -> list[Event]:
        events: list[Event] = []
        for event_id in dict.fromkeys(event_ids):
            event = await self._bridge.store.get_event(event_id)
            if event is None or (scope is not None and event.account != scope):
                raise NotFound(f"no event '{event_id}'")
            events.append(event)
        return events

    async def _events_in_window(self, request: ReplayRequest, scope: str | None) -> list[Event]:
        assert request.subscription is not None
        self.subscription(request.subscription, scope)
        found: dict[str, Event] = {}
        cursor: str | None = None
        for _ in range(_REPLAY_MAX_PAGES):
            page, cursor = await self._bridge.store.list_deliveries(
                subscription=request.subscription,
                status=request.status,
                since=request.since,
                until=request.until,
                cursor=cursor,
                limit=_REPLAY_PAGE,
                account=scope,
            )
            for delivery in page:
                found.setdefault(delivery.event_id, delivery.event)
            if cursor is None or len(found) >= request.limit:
                break
        # The store pages newest first; replay in the order things happened.
        return sorted(list(found.values())[: request.limit], key=lambda e: e.timestamp)

    # -- reload -------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Re-read the configuration file: apply all of it or nothing (see bridge.reload)."""
        return await reload_bridge(self._bridge)


class ServedBridge(BridgeParts, Protocol):
    """What the admin API serves: the running parts, and the operations on them."""

    operations: Operations

    @property
    def managed(self) -> ManagedSubscriptions: ...
