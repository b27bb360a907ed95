"""The MQTT outbox: messages the bridge must publish, kept until the broker takes them.

An accepted inbound webhook becomes one row of the ``outbox`` table, committed
in the same transaction as its replay id, before the sender gets its 202. The
outbox publisher (:mod:`bridge.inbound.outbox`) then claims rows under a lease
(the same lease rules as deliveries, see :mod:`bridge.store.base`: a lease
follows its holder's heartbeat, a dead holder's claims are taken over, every
claim from someone else is a new fencing token), publishes them with QoS 1
and records the outcome. A row becomes ``published`` only on a PUBACK with a
reason code below 0x80; a refusal or a broker outage is a failed attempt,
retried with backoff.

Order: on one topic, messages go out in acceptance order. Only a topic's
*head of line* (its oldest pending message) is claimable, so at most one
message per topic is ever in flight, and the next one waits until it is
published or dead.

Age: a message older than its ``max_age`` (counted from acceptance, or from an
operator's requeue) is never published: a claim turns it ``dead`` with
reason ``too_old`` instead. An IoT command an hour late is often worse than
none.

Pipe replies: a pipe subscription's answer (:mod:`bridge.delivery.pipe`) is a
row of the same table (``kind`` ``reply``, ``source`` the subscription), committed
in the transaction that records the attempt it answers (see
:func:`bridge.store.base.Store.record_attempts`), and published under the same
rules, with the device's MQTT 5 correlation data and the answer's content type.

Everything here is pure (dataclasses, the protocol, row conversions and
cursors); the SQL lives in ``bridge/store/{sqlite,postgres}/outbox.py``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bridge.errors import StoreError
from bridge.store import pages

__all__ = [
    "OUTBOX_COLUMNS",
    "OUTBOX_OPERATIONS",
    "TOO_OLD",
    "OutboxClaim",
    "OutboxKind",
    "OutboxMessage",
    "OutboxOutcome",
    "OutboxStats",
    "OutboxStatus",
    "OutboxStore",
    "ReplayNote",
    "decode_outbox_cursor",
    "encode_outbox_cursor",
    "insert_values",
    "message_from_row",
    "outcome_values",
    "page_and_cursor",
]

TOO_OLD = "too_old"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    DEAD = "dead"


class OutboxKind(StrEnum):
    INBOUND = "inbound"  # an accepted inbound webhook
    REPLY = "reply"  # a pipe subscription's answer (or error reply) to a device


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to publish (QoS 1, MQTT 5 correlation data = ``id``)."""

    id: str  # stable: the 202 answer's id, the correlation data of every attempt
    source: str  # the ``inbound:`` entry that accepted it
    topic: str
    payload: bytes
    created_at: float
    max_age: float  # seconds from ``age_start`` after which it is never published
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    next_attempt_at: float | None = None
    published_at: float | None = None
    dead_reason: str | None = None
    last_error: str | None = None
    lease_token: int = 0
    # Where max_age counts from when an operator's requeue moved it.
    age_from: float | None = None
    seq: int = 0  # acceptance order
    kind: OutboxKind = OutboxKind.INBOUND
    # Replies: the device's MQTT 5 correlation data (None: it gave none) and the
    # answer's content type; inbound messages are correlated by their id.
    correlation: bytes | None = None
    content_type: str | None = None
    delivery_id: str | None = None  # replies: the delivery whose attempt it answers

    @property
    def publish_correlation(self) -> bytes | None:
        """The MQTT 5 correlation data every attempt publishes with."""
        if self.kind is OutboxKind.REPLY:
            return self.correlation
        return self.id.encode()

    @property
    def age_start(self) -> float:
        return self.created_at if self.age_from is None else self.age_from

    @property
    def expires_at(self) -> float:
        return self.age_start + self.max_age


@dataclass(frozen=True, slots=True)
class ReplayNote:
    """The replay id committed with an accepted message (see bridge.inbound.server)."""

    key: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    messages: list[OutboxMessage]  # leased to the claimer, oldest first, one per topic
    expired: list[OutboxMessage]  # turned dead as too old by this claim


@dataclass(frozen=True, slots=True)
class OutboxOutcome:
    """What one publish attempt of a claimed message came to."""

    id: str
    lease_token: int  # the claim it was made under: a later claim's outcome wins
    published: bool
    error: str | None = None
    # When to try again after a failure; None: no time left (dead, too old).
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    counts: dict[str, int]  # by status, every status present
    oldest_pending: float | None  # age start of the oldest pending message


OUTBOX_COLUMNS = """id, source, topic, payload, created_at, max_age, status, attempts,
    next_attempt_at, published_at, dead_reason, last_error, lease_token, age_from, seq,
    kind, correlation, content_type, delivery_id"""


def message_from_row(row: Sequence[Any]) -> OutboxMessage:
    """A message from a row of ``OUTBOX_COLUMNS``."""
    return OutboxMessage(
        id=row[0],
        source=row[1],
        topic=row[2],
        payload=bytes(row[3]),
        created_at=float(row[4]),
        max_age=float(row[5]),
        status=OutboxStatus(row[6]),
        attempts=int(row[7]),
        next_attempt_at=None if row[8] is None else float(row[8]),
        published_at=None if row[9] is None else float(row[9]),
        dead_reason=row[10],
        last_error=row[11],
        lease_token=int(row[12]),
        age_from=None if row[13] is None else float(row[13]),
        seq=int(row[14]),
        kind=OutboxKind(row[15]),
        correlation=None if row[16] is None else bytes(row[16]),
        content_type=row[17],
        delivery_id=row[18],
    )


def outcome_values(
    outcome: OutboxOutcome, now: float
) -> tuple[str, float | None, float | None, str | None, str | None]:
    """(status, next_attempt_at, published_at, dead_reason, last_error) after ``outcome``."""
    if outcome.published:
        return OutboxStatus.PUBLISHED.value, None, now, None, None
    if outcome.retry_at is None:
        return OutboxStatus.DEAD.value, None, None, TOO_OLD, outcome.error
    return OutboxStatus.PENDING.value, outcome.retry_at, None, None, outcome.error


def insert_values(
    message: OutboxMessage, now: float
) -> tuple[str, str, str, bytes, float, float, float]:
    """A new message's row values as the backends' inserts number them: (id, source, topic,
    payload, created_at, now, max_age), created_at also being its first due time."""
    return (
        message.id,
        message.source,
        message.topic,
        message.payload,
        message.created_at,
        now,
        message.max_age,
    )


_CURSOR = "outbox:"


def encode_outbox_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR}{seq}".encode()).decode("ascii").rstrip("=")


def decode_outbox_cursor(cursor: str) -> int:
    """The ``seq`` a list page continues below (pages go newest first)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if text.startswith(_CURSOR):
            return int(text[len(_CURSOR) :])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise StoreError("invalid inbound list cursor")


def page_and_cursor(
    rows: list[OutboxMessage], limit: int
) -> tuple[list[OutboxMessage], str | None]:
    """One page of messages out of up to ``limit + 1``, and the next page's cursor if any."""
    return pages.page_and_cursor(rows, limit, lambda message: encode_outbox_cursor(message.seq))


OUTBOX_OPERATIONS = frozenset(
    [
        "accept_inbound",
        "claim_outbox",
        "get_outbox",
        "list_outbox",
        "next_outbox_due",
        "outbox_stats",
        "purge_outbox",
        "record_outbox",
        "release_outbox",
        "requeue_outbox",
    ]
)
"""The outbox's operations: each ``name(conn, …)`` in a backend's ``outbox`` module."""


class OutboxStore:
    """The store's outbox methods, each one transaction; a base of
    :class:`bridge.store.base.Store`, which runs the backend's operations."""

    takeover_after: float

    async def _write(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _read(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def accept_inbound(
        self, message: OutboxMessage, replay: ReplayNote | None, *, now: float
    ) -> bool:
        """Commit an accepted inbound message with its replay id, in one transaction.

        False (and nothing stored) when ``replay`` names an id already held and
        unexpired for the same source: the request is a replay. Expired replay
        ids are dropped on the way.
        """
        fresh: bool = await self._write("accept_inbound", message, replay, now)
        return fresh

    async def claim_outbox(
        self, *, now: float, owner: str, lease_until: float, limit: int
    ) -> OutboxClaim:
        """Turn pending messages past their ``max_age`` (and not under a live lease)
        dead as ``too_old``, then lease up to ``limit`` due messages, each the
        oldest pending message of its topic, oldest first. ``limit`` 0 only
        expires. Lease rules as ``Store.claim_due``."""
        lease = (now, owner, lease_until, self.takeover_after)
        claim: OutboxClaim = await self._write("claim_outbox", lease, limit)
        return claim

    async def record_outbox(self, outcomes: Sequence[OutboxOutcome], *, now: float) -> None:
        """Apply publish outcomes (each only while its lease token is current) and
        release their leases."""
        if outcomes:
            await self._write("record_outbox", list(outcomes), now)

    async def release_outbox(self, *, owner: str, ids: Sequence[str] | None = None) -> None:
        """Drop ``owner``'s leases on ``ids`` (all of them when None: a restart)."""
        await self._write("release_outbox", owner, None if ids is None else list(ids))

    async def next_outbox_due(self) -> float | None:
        """The earliest ``next_attempt_at`` of an unleased head-of-line pending message."""
        due: float | None = await self._read("next_outbox_due")
        return due

    async def get_outbox(self, message_id: str) -> OutboxMessage | None:
        found: OutboxMessage | None = await self._read("get_outbox", message_id)
        return found

    async def list_outbox(
        self,
        *,
        status: OutboxStatus | None,
        source: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[OutboxMessage], str | None]:
        """Messages newest first, one page, and the cursor of the next page or None."""
        page: tuple[list[OutboxMessage], str | None] = await self._read(
            "list_outbox", status, source, cursor, limit
        )
        return page

    async def requeue_outbox(self, message_id: str, *, now: float) -> bool:
        """Make a dead or published message pending, due now, its age counted from
        now; False when unknown or still pending."""
        moved: bool = await self._write("requeue_outbox", message_id, now)
        return moved

    async def outbox_stats(self) -> OutboxStats:
        stats: OutboxStats = await self._read("outbox_stats")
        return stats

    async def purge_outbox(self, *, published_before: float, dead_before: float) -> int:
        """Delete published messages published before ``published_before`` and dead
        ones that died before ``dead_before``; returns how many."""
        removed: int = await self._write("purge_outbox", published_before, dead_before)
        return removed
