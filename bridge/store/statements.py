"""The statements both stores run as they are, but for their placeholders.

They are written with SQLite's numbered placeholders (``?1``, ``?2``…);
:func:`numbered` gives PostgreSQL's (``$1``, ``$2``…) for the same text.
f-strings here only join constant fragments; values are always bound.
"""

from __future__ import annotations

import functools
import re

from bridge.store.common import DELIVERY_COLUMNS, FROM_DELIVERIES

__all__ = [
    "COUNT_BY_STATUS",
    "COUNT_EVENTS",
    "COUNT_REJECTED",
    "GET_DELIVERY",
    "GET_EVENT",
    "LAST_PACKETS_SEQ",
    "LIST_REJECTED",
    "LOG_PACKETS",
    "PRUNE_PACKETS",
    "QUEUE_DEPTH",
    "RECENT_PACKETS",
    "RELEASE_OWNER",
    "REQUEUE",
    "RESUME_AGE",
    "SAVE_SUBSCRIPTION_STATE",
    "SUBSCRIPTION_STATES",
    "numbered",
]

# Through the status index: only pending deliveries can hold a lease that matters.
RELEASE_OWNER = """UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
    WHERE status = 'pending' AND lease_owner = ?1"""
GET_DELIVERY = f"SELECT {DELIVERY_COLUMNS} {FROM_DELIVERIES} WHERE d.id = ?1"
GET_EVENT = "SELECT body, context, account FROM events WHERE id = ?1"
QUEUE_DEPTH = "SELECT count(*) FROM deliveries WHERE subscription = ?1 AND status = 'pending'"
SUBSCRIPTION_STATES = """SELECT name, disabled, disabled_reason, failing_since, last_success,
    last_failure, extra FROM subscription_state ORDER BY name"""
SAVE_SUBSCRIPTION_STATE = """INSERT INTO subscription_state
    (name, disabled, disabled_reason, failing_since, last_success, last_failure, extra)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled,
      disabled_reason = excluded.disabled_reason, failing_since = excluded.failing_since,
      last_success = excluded.last_success, last_failure = excluded.last_failure,
      extra = excluded.extra"""
LIST_REJECTED = """SELECT received_at, topic, payload, reason, detail, account FROM rejected
    ORDER BY id DESC LIMIT ?1"""
COUNT_BY_STATUS = "SELECT status, count(*) FROM deliveries GROUP BY status"
COUNT_EVENTS = "SELECT count(*) FROM events"
COUNT_REJECTED = "SELECT count(*) FROM rejected"
# A new fencing token: the result of an attempt still in flight no longer applies.
# An operator's retry always sends: the delivery's age starts again.
REQUEUE = """UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, lease_owner = NULL,
    lease_until = NULL, dead_reason = NULL, updated_at = ?1, lease_token = lease_token + 1,
    age_from = ?1
    WHERE id = ?2"""
RESUME_AGE = """UPDATE deliveries SET age_from = coalesce(age_from, created_at) + ?1
    WHERE subscription = ?2 AND status = 'pending'"""

# The packet log (bridge.store.packets): one row per commit, the newest read first.
RECENT_PACKETS = """SELECT connection, packets FROM ingest_packets WHERE client_id = ?1
    ORDER BY seq DESC LIMIT ?2"""
LAST_PACKETS_SEQ = "SELECT max(seq) FROM ingest_packets WHERE client_id = ?1"
LOG_PACKETS = """INSERT INTO ingest_packets (client_id, seq, connection, packets)
    VALUES (?1, ?2, ?3, ?4)"""
PRUNE_PACKETS = "DELETE FROM ingest_packets WHERE client_id = ?1 AND seq <= ?2"

_NUMBERED = re.compile(r"\?(\d+)")


@functools.cache
def numbered(statement: str) -> str:
    """The statement with PostgreSQL's placeholders: ``?n`` becomes ``$n`` (each text
    converted once)."""
    return _NUMBERED.sub(r"$\1", statement)
