"""What the store keeps and hands out: plain rows shared by every backend.

Times are UNIX epoch seconds (float) throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, DeliveryStatus
from bridge.core.presence import Observation, Presence, Transition
from bridge.store.outbox import OutboxMessage

__all__ = [
    "Accepted",
    "AttemptOutcome",
    "AttemptRecord",
    "CatchUp",
    "Claim",
    "Delivery",
    "DeliveryStatus",
    "DeviceDelivery",
    "DeviceDetail",
    "DeviceEvent",
    "DeviceSummary",
    "EventSummary",
    "IngestBatch",
    "IngestResult",
    "Packet",
    "PresencePolicy",
    "Rejection",
    "SubscriptionState",
]


@dataclass(frozen=True, slots=True)
class Packet:
    """The MQTT PUBLISH a message came in: its packet identifier, the connection it came
    on, and a digest of its content (topic and payload). See :mod:`bridge.store.packets`."""

    id: int
    connection: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event ready to store, with the names of the subscriptions that want it."""

    event: Event
    subscriptions: tuple[str, ...]
    received_at: float
    # The PUBLISH it came in (QoS 1 and 2), and whether the broker flagged it as a
    # redelivery (DUP): such a message may be a copy of one committed on an earlier
    # connection, recognised by its packet identifier and content (bridge.store.packets).
    packet: Packet | None = None
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
    # A device's first live event announces it (device.online, reason first_seen).
    announce_first: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become an event: kept with its reason for inspection."""

    received_at: float
    topic: str
    payload: bytes  # at most the first limits.max_payload bytes
    reason: str  # short machine code, e.g. "invalid_json"
    detail: str  # human sentence
    packet: Packet | None = None  # the PUBLISH it came in; not kept with the rejection
    account: str | None = None  # the account its topic names, when known


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
    # The retry schedule's delays used so far (see bridge.core.retry.schedule_after).
    retry_step: int = 0
    # Made due before its slot (a catch-up, an operator's "send now"): its next
    # attempt, should it fail, does not use up a step of the schedule.
    early: bool = False
    # The account of its subscription (None: an operator's subscription).
    account: str | None = None

    @property
    def age_start(self) -> float:
        return self.created_at if self.age_from is None else self.age_from

    @property
    def event_id(self) -> str:
        return self.event.id


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What one chunk of a catch-up did (see ``Store.catch_up``)."""

    released: int  # deliveries made due now
    done: bool  # nothing is left: the subscription's catch-up mark is cleared
    cursor: tuple[float, str] | None = None  # (created_at, id) of the last one released


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim's request, as the backends' operations take it (see ``Store.claim_due``)."""

    subscription: str
    now: float
    owner: str
    lease_until: float
    limit: int
    stale: float  # a holder whose heartbeat is older than this many seconds is dead
    ordered: bool = False
    per_device: int = 1  # ordered batching: a device's first this many at once


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """One ``ingest`` call's input, as the backends' operations take it."""

    accepted: Sequence[Accepted]
    rejected: Sequence[Rejection]
    now: float
    owner: str
    lease_until: float  # new deliveries are leased to ``owner`` until then
    presence: PresencePolicy | None = None
    # Subscriptions that send a device's deliveries in order (see bridge.store.heads).
    ordered: frozenset[str] = frozenset()
    # How many of the last committed messages a redelivery is compared with
    # (0: keep no packet log; see bridge.store.packets).
    packet_window: int = 0
    # Subscription name -> its account, for the subscriptions that belong to one: each
    # new delivery is recorded with its subscription's account (bridge.core.route).
    owners: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestResult:
    deliveries: list[Delivery]  # created by this call, leased to the caller
    stored: int  # events newly stored
    duplicates: int  # events already in the store (same id, or a recognised redelivery)
    # Presence events that repeated the known state: stored, delivered to nobody.
    collapsed: int = 0
    # Deliveries of ordered subscriptions that head their device's queue and may be
    # sent at once (bridge.store.heads); the others of those subscriptions wait for
    # the claim. Empty where the store does not decide heads.
    heads: frozenset[str] = frozenset()


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
    # Pipe mode: the answer to publish, committed with this record into the outbox
    # (only while the lease token still matches: a fenced-out result sends nothing).
    reply: OutboxMessage | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    name: str
    disabled: bool = False
    disabled_reason: str | None = None
    failing_since: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # When a failing streak ended whose catch-up is not finished (see
    # bridge.store.base.Store.catch_up); written only by end_streak and catch_up.
    catching_up: float | None = None


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
    account: str | None = None  # the account it belongs to (None: none)


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
