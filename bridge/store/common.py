"""What the SQLite and PostgreSQL stores share: backend-neutral rows, decisions and cursors.

Everything here is pure: functions take values (rows already fetched, ``now``)
and return values. The backends keep the SQL and the calls that run it; this
module turns rows into domain objects and back, picks the new events of a
batch, makes the presence decisions a batch implies, and encodes list cursors.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from bridge.core.events import Event
from bridge.core.presence import Observation, Presence, PresenceState, decide
from bridge.core.trace import EventContext
from bridge.errors import StoreError
from bridge.store import pages
from bridge.store.ids import DELIVERY_ID_PREFIX
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    DeviceDelivery,
    DeviceDetail,
    DeviceEvent,
    DeviceSummary,
    EventSummary,
    PresencePolicy,
    Rejection,
    SubscriptionState,
)

__all__ = [
    "DELIVERY_COLUMNS",
    "DEVICE_COLUMNS",
    "DEVICE_DELIVERY_COLUMNS",
    "DEVICE_EVENT_COLUMNS",
    "DEVICE_NOTED",
    "DEVICE_SUMMARY_COLUMNS",
    "FROM_DELIVERIES",
    "PRESENCE_COLUMNS",
    "PresenceBatch",
    "check_page_limit",
    "decide_presence",
    "decide_timeouts",
    "decode_cursor",
    "decode_device_cursor",
    "delivery_counts",
    "delivery_filters",
    "delivery_from_row",
    "device_detail",
    "device_page_and_cursor",
    "device_rows",
    "device_summary_from_row",
    "encode_cursor",
    "encode_device_cursor",
    "event_from_body",
    "event_values",
    "not_yet_stored",
    "observed_devices",
    "outcome_values",
    "page_and_cursor",
    "prefix_range",
    "presence_from_row",
    "rejection_from_row",
    "subscription_state_from_row",
    "subscription_state_values",
]

# The columns ``delivery_from_row`` reads, in its order, and the join they come from.
DELIVERY_COLUMNS = """d.id, d.subscription, d.attempts, d.created_at, d.status,
    d.next_attempt_at, e.body, d.dead_reason, d.last_status_code, d.last_error,
    d.lease_token, d.age_from, e.context, coalesce(d.retry_step, d.attempts), d.early"""
FROM_DELIVERIES = "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
# The columns ``presence_from_row`` reads, in its order.
PRESENCE_COLUMNS = "device_id, state, last_seen, changed_at, reason, heartbeat"


# -- rows -----------------------------------------------------------------------------


def event_from_body(body: bytes, context: str | bytes | None = None) -> Event:
    """The stored envelope (and side context) as an Event; a damaged one is a store
    error, not a crash (a damaged context is dropped: the event is still sent)."""
    try:
        return Event.from_json(body, EventContext.from_json(context))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"a stored event cannot be read ({type(exc).__name__})") from exc


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """A row of ``DELIVERY_COLUMNS`` as a Delivery carrying its rebuilt Event."""
    return Delivery(
        id=row[0],
        event=event_from_body(row[6], row[12]),
        subscription=row[1],
        attempts=row[2],
        created_at=row[3],
        status=DeliveryStatus(row[4]),
        next_attempt_at=row[5],
        dead_reason=row[7],
        last_status_code=row[8],
        last_error=row[9],
        lease_token=row[10],
        age_from=row[11],
        retry_step=row[13],
        early=bool(row[14]),
    )


def event_values(event: Event, received_at: float) -> tuple[Any, ...]:
    """An event's column values: id, type, source, device_id, occurred_at, received_at,
    content_hash (no longer written: redeliveries are told by the packet log), body,
    context (JSON text, or None)."""
    return (
        event.id,
        event.type,
        event.source,
        event.device_id,
        event.timestamp.timestamp(),
        received_at,
        None,
        event.body(),
        event.context.to_json().decode("utf-8") if event.context is not None else None,
    )


def rejection_from_row(row: Sequence[Any]) -> Rejection:
    """A row of (received_at, topic, payload, reason, detail) as a Rejection."""
    return Rejection(row[0], row[1], bytes(row[2]), row[3], row[4])


def subscription_state_from_row(row: Sequence[Any]) -> SubscriptionState:
    """A row of (name, disabled, disabled_reason, failing_since, last_success,
    last_failure, extra as JSON, catching_up) as a SubscriptionState."""
    return SubscriptionState(
        name=row[0],
        disabled=bool(row[1]),
        disabled_reason=row[2],
        failing_since=row[3],
        last_success=row[4],
        last_failure=row[5],
        extra=orjson.loads(row[6]),
        catching_up=row[7],
    )


def subscription_state_values(state: SubscriptionState) -> tuple[Any, ...]:
    """The column values ``subscription_state_from_row`` reads back, but the catch-up
    mark, which only ``end_streak`` and ``catch_up`` write."""
    return (
        state.name,
        state.disabled,
        state.disabled_reason,
        state.failing_since,
        state.last_success,
        state.last_failure,
        orjson.dumps(state.extra).decode(),
    )


def presence_from_row(row: Sequence[Any]) -> PresenceState:
    """A row of ``PRESENCE_COLUMNS`` as a PresenceState."""
    return PresenceState(row[0], Presence(row[1]), row[2], row[3], row[4], row[5])


def outcome_values(
    record: AttemptRecord, outcome: AttemptOutcome, now: float
) -> tuple[str, float | None, str | None]:
    """What an outcome writes on its delivery: status, next_attempt_at, dead_reason."""
    next_at = None
    if outcome.status is DeliveryStatus.PENDING:
        next_at = outcome.next_attempt_at if outcome.next_attempt_at is not None else now
    reason = outcome.reason if outcome.status is DeliveryStatus.DEAD else None
    return outcome.status.value, next_at, reason


def delivery_counts(
    by_status: Iterable[Sequence[Any]], events: int, rejected: int
) -> dict[str, int]:
    """``Store.counts`` from (status, count) rows and the two table counts."""
    found = {status.value: 0 for status in DeliveryStatus}
    found.update({row[0]: row[1] for row in by_status})
    found["events"] = events
    found["rejected"] = rejected
    return found


# -- new events of a batch --------------------------------------------------------------


def not_yet_stored(
    accepted: Sequence[Accepted], stored_ids: set[str], redelivered: set[int]
) -> list[Accepted]:
    """The items of a batch that are neither stored already nor repeated in the batch.

    ``stored_ids`` are the batch's event ids the store already holds;
    ``redelivered`` the positions of broker redeliveries of committed messages
    (see :func:`bridge.store.packets.redelivered`).
    """
    seen_ids = set(stored_ids)
    fresh: list[Accepted] = []
    for position, item in enumerate(accepted):
        if item.event.id in seen_ids or position in redelivered:
            continue
        seen_ids.add(item.event.id)  # later items of the same batch are checked too
        fresh.append(item)
    return fresh


# -- presence ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """A batch with presence decided, and what the store must write for it."""

    items: list[Accepted]  # in the order to store: synthetic events before their cause
    collapsed: int  # events that repeated the known state (kept, delivered to nobody)
    synthetic: list[Accepted]  # the announced events among ``items``
    changed: list[PresenceState]  # presence rows to save


def observed_devices(items: Sequence[Accepted]) -> list[str]:
    """The devices a batch carries observations of, sorted (the order to lock them in)."""
    return sorted({item.presence.device_id for item in items if item.presence is not None})


def decide_presence(
    fresh: Sequence[Accepted],
    states: dict[str, PresenceState],
    policy: PresencePolicy,
    now: float,
) -> PresenceBatch:
    """Run :func:`bridge.presence.decide` over a batch in order, against ``states``
    (the stored rows of the batch's devices): synthetic events go just before the
    event that caused them, and an event repeating the known state loses its
    subscriptions."""
    known: dict[str, PresenceState | None] = dict(states)
    changed: dict[str, PresenceState] = {}
    result: list[Accepted] = []
    synthetic: list[Accepted] = []
    collapsed = 0
    for item in fresh:
        observation: Observation | None = item.presence
        if observation is None:
            result.append(item)
            continue
        decision = decide(
            known.get(observation.device_id),
            observation,
            now,
            policy.offline_after,
            first_seen=policy.announce_first,
        )
        if decision.state is not None:
            known[observation.device_id] = decision.state
            changed[observation.device_id] = decision.state
        announced = [policy.announce(transition) for transition in decision.emit]
        synthetic.extend(announced)
        result.extend(announced)
        if decision.keep_event:
            result.append(item)
        else:
            collapsed += 1
            result.append(replace(item, subscriptions=()))
    return PresenceBatch(result, collapsed, synthetic, list(changed.values()))


def decide_timeouts(
    silent: Iterable[PresenceState], policy: PresencePolicy, now: float
) -> tuple[list[PresenceState], list[Accepted]]:
    """Silent online devices become offline: the rows to save and the announced events."""
    changed: list[PresenceState] = []
    announced: list[Accepted] = []
    for state in silent:
        decision = decide(state, None, now, policy.offline_after)
        if decision.state is None or not decision.emit:
            continue
        changed.append(decision.state)
        announced.extend(policy.announce(transition) for transition in decision.emit)
    return changed, announced


# -- listing deliveries -----------------------------------------------------------------


def check_page_limit(limit: int) -> None:
    if limit < 1:
        raise StoreError("a delivery list page needs a limit of at least 1")


def delivery_filters(
    *,
    subscription: str | None,
    status: DeliveryStatus | None,
    since: float | None,
    until: float | None,
    cursor: str | None,
) -> list[tuple[str, Any]]:
    """The conditions of a delivery list page as (``column operator``, value) pairs.

    Delivery ids sort by creation time, so the id alone pages newest first: the
    cursor becomes ``d.id <`` the last id of the previous page.
    """
    before_id = decode_cursor(cursor) if cursor is not None else None
    candidates = (
        ("d.subscription =", subscription),
        ("d.status =", status.value if status else None),
        ("d.created_at >=", since),
        ("d.created_at <", until),
        ("d.id <", before_id),
    )
    return [(condition, value) for condition, value in candidates if value is not None]


def page_and_cursor(rows: list[Delivery], limit: int) -> tuple[list[Delivery], str | None]:
    """One page of deliveries out of up to ``limit + 1``, and the next page's cursor if any."""
    return pages.page_and_cursor(rows, limit, lambda delivery: encode_cursor(delivery.id))


def encode_cursor(delivery_id: str) -> str:
    """The opaque cursor of the page after ``delivery_id``."""
    return base64.urlsafe_b64encode(delivery_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(DELIVERY_ID_PREFIX):
        raise StoreError("invalid delivery list cursor")
    return text


# -- the device directory ---------------------------------------------------------------

# The columns ``device_summary_from_row`` reads, in its order: a directory row
# (``d``) joined to its presence row (``p``).
DEVICE_SUMMARY_COLUMNS = """d.device_id, p.state, p.changed_at, p.last_seen, p.reason,
    d.last_event_id, d.last_event_type, d.last_event_at, d.last_received_at"""
# The columns ``device_rows`` gives values for, in its order.
DEVICE_COLUMNS = """device_id, first_seen, last_event_id, last_event_type, last_event_at,
    last_received_at"""
# What noting a known device changes: its latest event, which only moves forward (two
# batches may commit out of order). SQLite and PostgreSQL spell the upsert alike.
DEVICE_NOTED = """ON CONFLICT (device_id) DO UPDATE SET last_event_id = excluded.last_event_id,
      last_event_type = excluded.last_event_type, last_event_at = excluded.last_event_at,
      last_received_at = excluded.last_received_at
    WHERE devices.last_received_at IS NULL
       OR excluded.last_received_at >= devices.last_received_at"""
# An event of a device's history, and the deliveries of those events.
DEVICE_EVENT_COLUMNS = "id, type, occurred_at, received_at"
DEVICE_DELIVERY_COLUMNS = """event_id, id, subscription, status, attempts, created_at,
    next_attempt_at, dead_reason, last_status_code"""
_DEVICE_CURSOR = "device:"


def device_summary_from_row(row: Sequence[Any]) -> DeviceSummary:
    """A row of ``DEVICE_SUMMARY_COLUMNS`` as a DeviceSummary."""
    last_event = None if row[5] is None else EventSummary(row[5], row[6], row[7], row[8])
    last_seen = row[3]
    if last_seen is None and last_event is not None:
        last_seen = last_event.received_at
    return DeviceSummary(
        device_id=row[0],
        state=None if row[1] is None else Presence(row[1]),
        changed_at=row[2],
        last_seen=last_seen,
        reason=row[4],
        last_event=last_event,
    )


def device_rows(items: Iterable[Accepted]) -> list[tuple[Any, ...]]:
    """The directory rows a batch of newly stored events writes, one per device, sorted
    by device id (the order to lock them in): the device's first receipt in the batch
    and its latest event."""
    first: dict[str, float] = {}
    last: dict[str, Accepted] = {}
    for item in items:
        device = item.event.device_id
        if device is None:
            continue
        first[device] = min(first.get(device, item.received_at), item.received_at)
        last[device] = item
    return [
        (
            device,
            first[device],
            last[device].event.id,
            last[device].event.type,
            last[device].event.timestamp.timestamp(),
            last[device].received_at,
        )
        for device in sorted(last)
    ]


def prefix_range(prefix: str | None) -> tuple[str, str | None]:
    """The ids starting with ``prefix`` as the range ``low <= id < high`` (high None:
    no end) in code point order, the byte order of UTF-8 both stores compare in."""
    text = prefix or ""
    while text:
        last = ord(text[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates are no characters: skip them
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix or "", text[:-1] + chr(last)
        text = text[:-1]
    return prefix or "", None


def device_detail(
    summary: DeviceSummary,
    events: Iterable[Sequence[Any]],
    deliveries: Iterable[Sequence[Any]],
) -> DeviceDetail:
    """A device's detail from its ``DEVICE_EVENT_COLUMNS`` rows (newest first) and the
    ``DEVICE_DELIVERY_COLUMNS`` rows of those events (oldest first)."""
    by_event: dict[str, list[DeviceDelivery]] = {}
    for row in deliveries:
        by_event.setdefault(row[0], []).append(
            DeviceDelivery(
                id=row[1],
                subscription=row[2],
                status=DeliveryStatus(row[3]),
                attempts=row[4],
                created_at=row[5],
                next_attempt_at=row[6] if row[3] == DeliveryStatus.PENDING.value else None,
                dead_reason=row[7],
                last_status_code=row[8],
            )
        )
    history = tuple(
        DeviceEvent(EventSummary(*row[:4]), tuple(by_event.get(row[0], ()))) for row in events
    )
    return DeviceDetail(summary, history)


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One directory page to read: ids in ``[low, high)`` (no end when high is None),
    after ``after`` when given, in ``state`` when given; ``size`` rows at most."""

    state: Presence | None
    low: str
    high: str | None
    after: str | None
    size: int


def device_page(
    state: Presence | None, prefix: str | None, cursor: str | None, limit: int
) -> DevicePage:
    """The page a directory listing asks for, with one row more than ``limit`` to see
    whether another page follows."""
    if limit < 1:
        raise StoreError("a device list page needs a limit of at least 1")
    after = decode_device_cursor(cursor) if cursor is not None else None
    low, high = prefix_range(prefix)
    return DevicePage(state, low, high, after, limit + 1)


def device_page_and_cursor(
    rows: list[DeviceSummary], limit: int
) -> tuple[list[DeviceSummary], str | None]:
    """One page of devices out of up to ``limit + 1``, and the next page's cursor if any."""
    return pages.page_and_cursor(rows, limit, lambda device: encode_device_cursor(device.device_id))


def encode_device_cursor(device_id: str) -> str:
    """The opaque cursor of the directory page after ``device_id``."""
    raw = (_DEVICE_CURSOR + device_id).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_device_cursor(cursor: str) -> str:
    """The device id a directory cursor continues after."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_DEVICE_CURSOR) or len(text) == len(_DEVICE_CURSOR):
        raise StoreError("invalid device list cursor")
    return text[len(_DEVICE_CURSOR) :]
