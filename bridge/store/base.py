"""The store protocol: the durable outbox every backend implements.

A backend keeps four things: events, deliveries (one per event and matching
subscription), attempts (one per HTTP try) and rejected messages. It is the
single source of truth: the dispatcher holds deliveries only under a *lease*
(owner + expiry) taken in the store, so several instances can share one store
and a killed instance's deliveries are taken over when its leases run out.

Times are UNIX epoch seconds (float) throughout; callers pass ``now`` so the
logic stays testable with a fake clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bridge.events import Event

__all__ = [
    "Accepted",
    "AttemptOutcome",
    "AttemptRecord",
    "Delivery",
    "DeliveryStatus",
    "IngestResult",
    "Rejection",
    "Store",
    "SubscriptionState",
]


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at next_attempt_at (a retry, or not yet tried)
    DELIVERED = "delivered"
    DEAD = "dead"  # out of attempts, too old, or refused for good; kept and replayable


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event ready to store, with the names of the subscriptions that want it."""

    event: Event
    subscriptions: tuple[str, ...]
    received_at: float
    # Set for events whose device gave no message id: lets a broker redelivery
    # (DUP flag) of an already stored message be recognised and skipped.
    content_hash: str | None = None
    redelivery: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become an event: kept with its reason for inspection."""

    received_at: float
    topic: str
    payload: bytes  # at most the first limits.max_payload bytes
    reason: str  # short machine code, e.g. "invalid_json"
    detail: str  # human sentence


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one subscription, as claimed from the store."""

    id: str
    event: Event
    subscription: str
    attempts: int  # attempts already made
    created_at: float
    status: DeliveryStatus = DeliveryStatus.PENDING
    next_attempt_at: float | None = None
    # What the last attempt left behind, for operators (API, CLI).
    dead_reason: str | None = None  # for DEAD: "exhausted", "gone", "too_old"
    last_status_code: int | None = None
    last_error: str | None = None

    @property
    def event_id(self) -> str:
        return self.event.id


@dataclass(frozen=True, slots=True)
class IngestResult:
    deliveries: list[Delivery]  # created by this call, leased to the caller
    stored: int  # events newly stored
    duplicates: int  # events already in the store (same id, or a recognised redelivery)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What happened on one HTTP try."""

    delivery_id: str
    attempt: int  # 1-based
    started_at: float
    latency_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What the delivery becomes after an attempt."""

    status: DeliveryStatus
    next_attempt_at: float | None = None  # for PENDING
    reason: str | None = None  # for DEAD: "exhausted", "gone", "too_old"


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    name: str
    disabled: bool = False
    disabled_reason: str | None = None
    failing_since: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """The durable outbox. Every method is one transaction."""

    async def open(self) -> None:
        """Connect, migrate the schema to the current version.

        A store opened for a bridge instance (a non-empty ``owner``, its stable
        client id) also drops the leases still held in that name: the instance
        is starting, so nothing of its own is in flight, and those leases are
        left from a run that was killed. Tools that open the store beside a
        running bridge pass an empty owner.
        """

    async def close(self) -> None: ...

    async def ingest(
        self,
        accepted: Sequence[Accepted],
        rejected: Sequence[Rejection],
        *,
        now: float,
        owner: str,
        lease_until: float,
    ) -> IngestResult:
        """Store events, their deliveries and rejections in one commit.

        An event whose id is already stored is a duplicate: nothing new is
        created for it. A redelivery whose content hash is already stored is
        a duplicate too. New deliveries are leased to ``owner`` until
        ``lease_until`` and returned, so the caller can send them at once.
        """
        ...

    async def claim_due(
        self, subscription: str, *, now: float, owner: str, lease_until: float, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` pending deliveries of one subscription that are due
        (``next_attempt_at <= now``) and not leased by a live lease, oldest first."""
        ...

    async def next_due_at(self, subscription: str) -> float | None:
        """The earliest ``next_attempt_at`` of the subscription's pending deliveries
        that nobody holds a lease on. Leased ones are being sent; one whose lease
        has run out (its owner died) is found by the next ``claim_due``, not here."""
        ...

    async def record_attempts(
        self, results: Sequence[tuple[AttemptRecord, AttemptOutcome]], *, now: float
    ) -> None:
        """Record attempts and apply their outcomes; releases the leases."""
        ...

    async def release(self, delivery_ids: Sequence[str]) -> None:
        """Drop our leases on deliveries we will not send now (shutdown, overflow)."""
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def attempts(self, delivery_id: str) -> list[AttemptRecord]: ...

    async def get_event(self, event_id: str) -> Event | None: ...

    async def queue_depth(self, subscription: str) -> int:
        """Pending deliveries of a subscription."""
        ...

    async def subscription_states(self) -> dict[str, SubscriptionState]: ...

    async def save_subscription_state(self, state: SubscriptionState) -> None: ...

    async def requeue(self, delivery_id: str, *, now: float) -> bool:
        """Make a delivery (dead or delivered) pending and due now; False if unknown."""
        ...

    async def list_rejected(self, *, limit: int) -> list[Rejection]: ...

    async def counts(self) -> dict[str, int]:
        """Deliveries by status, plus ``events`` and ``rejected``."""
        ...

    async def purge(self, *, delivered_before: float, dead_before: float) -> int:
        """Delete delivered deliveries finished before ``delivered_before`` and dead
        ones finished before ``dead_before``, with their attempts, then the events
        left with no delivery that were received before the later of the two bounds.
        Returns the number of rows removed (deliveries, attempts and events)."""
        ...

    async def expire_older_than(self, *, occurred_before: float, now: float) -> int:
        """Pending deliveries (not under a live lease) of events that occurred before
        ``occurred_before`` become dead with reason ``too_old``; returns how many."""
        ...

    async def is_writable(self) -> bool:
        """A cheap write probe: False when the store refuses writes (read-only, full)."""
        ...

    async def list_deliveries(
        self,
        *,
        subscription: str | None,
        status: DeliveryStatus | None,
        since: float | None,
        until: float | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, optionally filtered (``since <= created_at < until``).

        Returns one page and an opaque cursor for the next page, or None after
        the last page.
        """
        ...

    async def create_deliveries(
        self, event: Event, subscriptions: Sequence[str], *, now: float
    ) -> list[Delivery]:
        """Store ``event`` if it is not stored yet and create one new pending delivery
        per subscription, due ``now`` and unleased (replay, test pings)."""
        ...
