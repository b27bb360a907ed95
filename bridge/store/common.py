"""What the SQLite and PostgreSQL stores share: backend-neutral rows, decisions and cursors.

Everything here is pure: functions take values (rows already fetched, ``now``)
and return values. The backends keep the SQL and the calls that run it; this
module turns rows into domain objects and back, picks the new events of a
batch, makes the presence decisions a batch implies, and encodes list cursors.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
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
    PresencePolicy,
    Rejection,
    SubscriptionState,
)

__all__ = [
    "DELIVERY_COLUMNS",
    "FROM_DELIVERIES",
    "PRESENCE_COLUMNS",
    "PresenceBatch",
    "check_page_limit",
    "decide_presence",
    "decide_timeouts",
    "decode_cursor",
    "delivery_counts",
    "delivery_filters",
    "delivery_from_row",
    "delivery_owners",
    "encode_cursor",
    "event_from_body",
    "event_values",
    "not_yet_stored",
    "observed_devices",
    "outcome_values",
    "page_and_cursor",
    "presence_from_row",
    "rejection_from_row",
    "subscription_state_from_row",
    "subscription_state_values",
]

# The columns ``delivery_from_row`` reads, in its order, and the join they come from.
DELIVERY_COLUMNS = """d.id, d.subscription, d.attempts, d.created_at, d.status,
    d.next_attempt_at, e.body, d.dead_reason, d.last_status_code, d.last_error,
    d.lease_token, d.age_from, e.context, d.account, e.account,
    coalesce(d.retry_step, d.attempts), d.early"""
FROM_DELIVERIES = "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
# The columns ``presence_from_row`` reads, in its order.
PRESENCE_COLUMNS = "device_id, state, last_seen, changed_at, reason, heartbeat, account"


# -- rows -----------------------------------------------------------------------------


def event_from_body(
    body: bytes, context: str | bytes | None = None, account: str | None = None
) -> Event:
    """The stored envelope (and side context and account) as an Event; a damaged one is
    a store error, not a crash (a damaged context is dropped: the event is still sent)."""
    try:
        return Event.from_json(body, EventContext.from_json(context), account)
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"a stored event cannot be read ({type(exc).__name__})") from exc


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """A row of ``DELIVERY_COLUMNS`` as a Delivery carrying its rebuilt Event."""
    return Delivery(
        id=row[0],
        event=event_from_body(row[6], row[12], row[14]),
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
        account=row[13] or None,
        retry_step=row[15],
        early=bool(row[16]),
    )


def event_values(event: Event, received_at: float) -> tuple[Any, ...]:
    """An event's column values: id, type, source, device_id, occurred_at, received_at,
    content_hash (no longer written: redeliveries are told by the packet log), body,
    context (JSON text, or None), account ("" for none)."""
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
        event.account or "",
    )


def delivery_owners(subscriptions: Iterable[str], owners: Mapping[str, str]) -> list[str]:
    """The account each new delivery belongs to: its subscription's ("" for the
    operator's). An account sees the deliveries of its own subscriptions only."""
    return [owners.get(name, "") for name in subscriptions]


def rejection_from_row(row: Sequence[Any]) -> Rejection:
    """A row of (received_at, topic, payload, reason, detail, account) as a Rejection."""
    return Rejection(row[0], row[1], bytes(row[2]), row[3], row[4], account=row[5] or None)


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
    return PresenceState(row[0], Presence(row[1]), row[2], row[3], row[4], row[5], row[6])


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


def observed_devices(items: Sequence[Accepted]) -> list[tuple[str, str]]:
    """The devices a batch carries observations of, as (account, device id), sorted (the
    order to lock them in)."""
    return sorted(
        {
            (item.presence.account, item.presence.device_id)
            for item in items
            if item.presence is not None
        }
    )


def decide_presence(
    fresh: Sequence[Accepted],
    states: dict[tuple[str, str], PresenceState],
    policy: PresencePolicy,
    now: float,
) -> PresenceBatch:
    """Run :func:`bridge.presence.decide` over a batch in order, against ``states``
    (the stored rows of the batch's devices, by (account, device id)): synthetic events
    go just before the
    event that caused them, and an event repeating the known state loses its
    subscriptions."""
    known: dict[tuple[str, str], PresenceState | None] = dict(states)
    changed: dict[tuple[str, str], PresenceState] = {}
    result: list[Accepted] = []
    synthetic: list[Accepted] = []
    collapsed = 0
    for item in fresh:
        observation: Observation | None = item.presence
        if observation is None:
            result.append(item)
            continue
        key = (observation.account, observation.device_id)
        decision = decide(
            known.get(key), observation, now, policy.offline_after, first_seen=policy.announce_first
        )
        if decision.state is not None:
            known[key] = decision.state
            changed[key] = decision.state
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
    account: str | None = None,
) -> list[tuple[str, Any]]:
    """The conditions of a delivery list page as (``column operator``, value) pairs
    (``account``: only the deliveries of that account's subscriptions).

    Delivery ids sort by creation time, so the id alone pages newest first: the
    cursor becomes ``d.id <`` the last id of the previous page.
    """
    before_id = decode_cursor(cursor) if cursor is not None else None
    candidates = (
        ("d.account =", account),
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
