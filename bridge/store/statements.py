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
    "BROKER_COUNTER",
    "CATCH_UP_INDEX",
    "CATCH_UP_STATE",
    "CAUGHT_UP",
    "CLEAR_CATCH_UP",
    "COUNT_BY_STATUS",
    "COUNT_EVENTS",
    "COUNT_REJECTED",
    "END_STREAK",
    "GET_DELIVERY",
    "GET_EVENT",
    "LAST_ATTEMPT",
    "LAST_PACKETS_SEQ",
    "LIST_REJECTED",
    "LOG_PACKETS",
    "MARK_ENDPOINT_FAILURES",
    "NOTE_BROKER_COUNTER",
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
    last_failure, extra, catching_up FROM subscription_state ORDER BY name"""
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

# A delivery's last attempt as its row keeps it (bridge.store.common.summarised_attempt).
LAST_ATTEMPT = """SELECT id, attempts, last_started_at, last_latency_ms, last_status_code,
    last_error, last_excerpt FROM deliveries WHERE id = ?1"""

# The packet log (bridge.store.packets): one row per commit, the newest read first.
RECENT_PACKETS = """SELECT connection, packets FROM ingest_packets WHERE client_id = ?1
    ORDER BY seq DESC LIMIT ?2"""
LAST_PACKETS_SEQ = "SELECT max(seq) FROM ingest_packets WHERE client_id = ?1"
LOG_PACKETS = """INSERT INTO ingest_packets (client_id, seq, connection, packets)
    VALUES (?1, ?2, ?3, ?4)"""
PRUNE_PACKETS = "DELETE FROM ingest_packets WHERE client_id = ?1 AND seq <= ?2"

# Catch-up (bridge.store.catchup). Ending the streak is conditional: of several
# instances ending it at once, one finds it set; that one marks the catch-up.
END_STREAK = """UPDATE subscription_state SET failing_since = NULL, last_success = ?2,
    catching_up = ?2 WHERE name = ?1 AND failing_since IS NOT NULL"""
CATCH_UP_STATE = "SELECT catching_up, failing_since FROM subscription_state WHERE name = ?1"
CLEAR_CATCH_UP = (
    "UPDATE subscription_state SET catching_up = NULL WHERE name = ?1 AND catching_up = ?2"
)
# ?1 subscription, ?2 now, ?3 the mark (when the streak ended), ?4 and ?5 the cursor
# (created_at, id) of the last one released, ?6 the chunk. Through the partial
# deliveries_catch_up index, oldest first. A failure recorded after the mark belongs
# to a later streak; a delivery already due needs no hurry.
CAUGHT_UP = """UPDATE deliveries SET next_attempt_at = ?2, early = 1
    WHERE id IN (SELECT id FROM deliveries
        WHERE subscription = ?1 AND status = 'pending' AND endpoint_failure = 1
          AND next_attempt_at > ?2 AND (not_before IS NULL OR not_before <= ?2)
          AND updated_at <= ?3 AND (created_at > ?4 OR (created_at = ?4 AND id > ?5))
        ORDER BY created_at, id LIMIT ?6{lock})
    RETURNING created_at, id"""

# The broker's counters (bridge.ingest.drops): the last value seen, then the new one.
BROKER_COUNTER = "SELECT value FROM broker_counters WHERE broker = ?1 AND name = ?2"
NOTE_BROKER_COUNTER = """INSERT INTO broker_counters (broker, name, value, seen_at)
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (broker, name) DO UPDATE
    SET value = excluded.value, seen_at = excluded.seen_at"""

# Schema step 13 (catch-up), the same on both stores; never edited once released.
MARK_ENDPOINT_FAILURES = """UPDATE deliveries SET endpoint_failure = 1
    WHERE status = 'pending' AND attempts > 0 AND (
        (last_status_code >= 500 AND last_status_code <> 503)
        OR (last_status_code IS NULL AND (last_error LIKE 'connection refused%'
            OR last_error LIKE 'connection failed%' OR last_error LIKE 'timeout%'
            OR last_error LIKE 'the server closed the connection%')))"""
CATCH_UP_INDEX = """CREATE INDEX deliveries_catch_up ON deliveries (subscription, created_at)
    WHERE status = 'pending' AND endpoint_failure = 1"""

_NUMBERED = re.compile(r"\?(\d+)")


@functools.cache
def numbered(statement: str) -> str:
    """The statement with PostgreSQL's placeholders: ``?n`` becomes ``$n`` (each text
    converted once)."""
    return _NUMBERED.sub(r"$\1", statement)
