"""The store protocol: the durable outbox every backend implements.

A backend keeps four things: events, deliveries (one per event and matching
subscription), attempts (one per HTTP try) and rejected messages. It is the
single source of truth: the dispatcher holds deliveries only under a *lease*
taken in the store, so several instances can share one store.

Leases follow their holder. A bridge instance keeps one heartbeat row in the
store (``heartbeat()``, renewed every few seconds, stamped with the database's
own clock); its leases hold for as long as that row is fresh, however long an
attempt takes, and are taken over by the others once the row is older than
``takeover_after`` (30 s by default). A holder with no heartbeat row (a tool,
a test) holds until the lease's ``lease_until``; so does an instance for its
own leases it has lost track of. Every claim stamps a *fencing token* on the
delivery: a result is applied only while the token it was sent under is still
the delivery's, so the late result of a lost lease never overwrites another
outcome.

Times are UNIX epoch seconds (float) throughout; callers pass ``now`` so the
logic stays testable with a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, DeliveryStatus
from bridge.core.presence import Observation, Presence, PresenceState, Transition
from bridge.store.outbox import OutboxStore

__all__ = [
    "Accepted",
    "AttemptOutcome",
    "AttemptRecord",
    "Delivery",
    "DeliveryStatus",
    "DeviceDelivery",
    "DeviceDetail",
    "DeviceEvent",
    "DeviceSummary",
    "EventSummary",
    "IngestResult",
    "PresencePolicy",
    "Rejection",
    "Store",
    "SubscriptionState",
]


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
    # The device was seen (see bridge.presence); None when presence is not tracked
    # or the event names no device.
    presence: Observation | None = None


@dataclass(frozen=True, slots=True)
class PresencePolicy:
    """How the store tracks presence during ``ingest`` and ``claim_presence_timeouts``.

    The store applies :func:`bridge.presence.decide` inside its transaction, in
    batch order, to every new (non-duplicate) event carrying an observation, and
    keeps one presence row per device. ``announce`` turns a synthetic transition
    into a routed event (pure, cheap, callable from the store's thread); its
    event id is stable (derived from ``Transition.key``), and one already stored
    is skipped like any duplicate.
    """

    # The timeout of a device that announced none; None: such devices never time out.
    offline_after: float | None
    announce: Callable[[Transition], Accepted]


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
    # The fencing token of the claim this copy was taken under (see the module docstring).
    lease_token: int = 0
    # Where retention.max_event_age counts from: the receipt (created_at) unless an
    # operator's retry or a resumed pause moved it.
    age_from: float | None = None

    @property
    def age_start(self) -> float:
        return self.created_at if self.age_from is None else self.age_from

    @property
    def event_id(self) -> str:
        return self.event.id


@dataclass(frozen=True, slots=True)
class IngestResult:
    deliveries: list[Delivery]  # created by this call, leased to the caller
    stored: int  # events newly stored
    duplicates: int  # events already in the store (same id, or a recognised redelivery)
    # Presence events that repeated the known state: stored, delivered to nobody.
    collapsed: int = 0


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
    # The ``Delivery.lease_token`` the attempt was made under; None applies the
    # outcome whoever holds the delivery now (operator tools).
    lease_token: int | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    name: str
    disabled: bool = False
    disabled_reason: str | None = None
    failing_since: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What the device directory shows of one stored event."""

    id: str
    type: str
    timestamp: float  # the event's own time (the device's clock when it gave one)
    received_at: float  # when the bridge took it in


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """One device of the directory: its presence row (if presence tracks it) and last event.

    ``state`` is None for a device the store knows only from its events
    (presence not tracked, or the events came before it was).
    """

    device_id: str
    state: Presence | None
    changed_at: float | None  # when ``state`` began
    last_seen: float | None  # the presence row's, else the last event's receipt
    reason: str | None  # why the state began (``heartbeat_timeout``, ``seen_again``…)
    last_event: EventSummary | None


@dataclass(frozen=True, slots=True)
class DeviceDelivery:
    """Where one event of a device stands with one subscription."""

    id: str
    subscription: str
    status: DeliveryStatus
    attempts: int
    created_at: float
    next_attempt_at: float | None
    dead_reason: str | None
    last_status_code: int | None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    event: EventSummary
    deliveries: tuple[DeviceDelivery, ...]  # oldest first


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    device: DeviceSummary
    events: tuple[DeviceEvent, ...]  # newest first


@runtime_checkable
class Store(OutboxStore, Protocol):
    """The durable outbox. Every method is one transaction (the MQTT outbox's are
    in :class:`bridge.store.outbox.OutboxStore`)."""

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
        presence: PresencePolicy | None = None,
    ) -> IngestResult:
        """Store events, their deliveries and rejections in one commit.

        An event whose id is already stored is a duplicate: nothing new is
        created for it. A redelivery whose content hash is already stored is
        a duplicate too. New deliveries are leased to ``owner`` until
        ``lease_until`` and returned, so the caller can send them at once.

        With ``presence``, each new event's observation goes through
        :func:`bridge.presence.decide` against the stored presence row of its
        device (rows read and written in this same transaction, in batch
        order): synthetic transitions are stored (with their deliveries) just
        before the event that caused them, and an event that repeats the known
        state is stored without deliveries (counted in ``collapsed``).
        """
        ...

    async def claim_presence_timeouts(
        self,
        *,
        now: float,
        policy: PresencePolicy,
        owner: str,
        lease_until: float,
        limit: int,
    ) -> IngestResult:
        """In one transaction: up to ``limit`` online devices silent for longer
        than their timeout (the heartbeat they announced, else
        ``policy.offline_after``; oldest first) become offline per
        :func:`bridge.presence.decide` with observation None, and the announced
        ``heartbeat_timeout`` events are stored with deliveries leased to
        ``owner``, as ``ingest`` does. Rows another instance is claiming are
        skipped (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so each timeout is
        emitted by one instance only."""
        ...

    async def get_presence(self, device_id: str) -> PresenceState | None:
        """The stored presence row of a device, or None for a device never seen."""
        ...

    async def claim_due(
        self,
        subscription: str,
        *,
        now: float,
        owner: str,
        lease_until: float,
        limit: int,
        ordered: bool = False,
    ) -> list[Delivery]:
        """Lease up to ``limit`` pending deliveries of one subscription that are due
        (``next_attempt_at <= now``) and not leased by a live lease, oldest first.

        A lease is live while its holder's heartbeat row is fresh; a holder with
        no row holds until ``lease_until``, and so does ``owner`` itself for its
        own leases (it claims back what it lost track of; the caller skips what
        it still holds). Claiming from another holder, or an unleased delivery,
        gives the delivery a new fencing token.

        ``ordered`` (the subscription's ``ordered: true``) makes it FIFO per device
        by arrival (creation) order: a delivery with a device id is claimable only
        when no earlier-created delivery of the same subscription and device is
        still pending (leased, in flight or waiting for its retry). So at most one
        delivery per device is out at a time, and a device's next one waits until
        the previous is delivered or dead. Deliveries without a device id are not
        held back."""
        ...

    async def next_due_at(self, subscription: str, *, ordered: bool = False) -> float | None:
        """The earliest ``next_attempt_at`` of the subscription's pending deliveries
        that nobody holds a lease on. Leased ones are being sent; one whose lease
        has run out (its owner died) is found by the next ``claim_due``, not here.
        With ``ordered``, only deliveries ``claim_due(ordered=True)`` could take
        count (a device's head of line), so a blocked device does not make the
        dispatcher poll."""
        ...

    async def record_attempts(
        self, results: Sequence[tuple[AttemptRecord, AttemptOutcome]], *, now: float
    ) -> None:
        """Record attempts and apply their outcomes; releases the leases.

        An outcome whose record carries a ``lease_token`` is applied only while
        the delivery still has that token (nobody claimed it since); the
        attempt itself is kept in the history either way."""
        ...

    async def heartbeat(self) -> None:
        """Renew this instance's heartbeat row (the store's ``owner``), stamped with
        the database's clock; its leases hold while the row is fresh."""
        ...

    async def oldest_pending(self, subscriptions: Sequence[str]) -> dict[str, float]:
        """For each named subscription with pending deliveries, the creation time of
        its oldest pending one (read on a read connection: it never waits for ingest)."""
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

    async def expire_older_than(
        self, *, received_before: float, now: float, paused: Sequence[str] = ()
    ) -> dict[str, int]:
        """Pending deliveries whose age counts from before ``received_before`` become
        dead with reason ``too_old``; returns how many per subscription.

        Age counts from receipt (see :attr:`Delivery.age_start`), never from the
        device's clock. Left alone: deliveries under a live lease (their attempt
        decides), and those of subscriptions disabled in the store or named in
        ``paused``: a paused subscription's queue does not age.
        """
        ...

    async def resume_age(self, subscription: str, *, paused_for: float) -> int:
        """A subscription's pause ended after ``paused_for`` seconds: its pending
        deliveries' age starts that much later; returns how many were moved."""
        ...

    async def is_writable(self) -> bool:
        """A cheap write probe: False when the store refuses writes (read-only, full)."""
        ...

    async def remember_inbound_id(
        self, source: str, msg_id: str, *, now: float, ttl: float
    ) -> bool:
        """Note an inbound webhook id for ``ttl`` seconds; False when already noted and unexpired.

        Inbound webhooks refuse a replayed ``webhook-id``: the check and the
        note are one atomic step, so two instances cannot both accept it.
        """
        ...

    async def confirm_inbound_id(self, source: str, msg_id: str, *, expires_at: float) -> None:
        """Hold a noted inbound id until ``expires_at``: its message was published."""
        ...

    async def forget_inbound_id(self, source: str, msg_id: str) -> None:
        """Drop a noted inbound id: its publish failed, so the sender's retry is not a replay."""
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

    async def list_devices(
        self,
        *,
        state: Presence | None,
        prefix: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[DeviceSummary], str | None]:
        """The device directory, ordered by device id (byte order of its UTF-8), one
        page at a time.

        Every ingest notes the devices its new events name, with their latest
        event, whether presence is tracked or not; a device stays listed until
        :meth:`forget_device`. ``state`` keeps the devices whose presence row is
        in that state; ``prefix`` those whose id starts with it. Returns one page
        and an opaque cursor for the next page, or None after the last page.
        Each page costs a few index probes per device listed, however many
        devices and events are stored.
        """
        ...

    async def get_device(self, device_id: str, *, events: int) -> DeviceDetail | None:
        """One device with its ``events`` most recent events (newest first), each
        with its deliveries; None for a device the store does not know."""
        ...

    async def forget_device(self, device_id: str) -> bool:
        """Drop a device from the directory, with its presence row; False if unknown.

        Its events stay until retention removes them; a message from the device
        later brings it back, as a device never seen.
        """
        ...
