"""The MQTT outbox's SQL for the SQLite store (see :mod:`bridge.store.outbox`).

Each function runs inside one transaction the store opens (``BEGIN
IMMEDIATE`` for writes: the write lock is held from the first statement, so
two processes sharing the file never claim the same message). Lease liveness
is judged by :data:`bridge.store.sqlite.leases.LEASE_LAPSED`, as for
deliveries. f-strings here only join constant fragments; values are bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from bridge.store import outbox as shared
from bridge.store.sqlite.leases import LEASE_LAPSED

__all__ = list(shared.OUTBOX_OPERATIONS)  # a backend has each outbox operation, no more


_PRUNE_IDS = "DELETE FROM inbound_ids WHERE expires_at < ?"
# Inserts a new id, or renews one whose time ran out; an unexpired one changes no row.
_REMEMBER = """INSERT INTO inbound_ids (source, msg_id, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (source, msg_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE inbound_ids.expires_at < ?"""
_INSERT = """INSERT INTO outbox (id, source, topic, payload, status, attempts, next_attempt_at,
    lease_token, created_at, updated_at, max_age)
    VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, 0, ?5, ?6, ?7)"""
# The oldest pending message of its topic (what per-topic order lets go next).
_HEAD_OF_LINE = """NOT EXISTS (SELECT 1 FROM outbox AS e
    WHERE e.topic = d.topic AND e.status = 'pending' AND e.seq < d.seq)"""
_EXPIRE = f"""UPDATE outbox SET status = 'dead', dead_reason = '{shared.TOO_OLD}',
    next_attempt_at = NULL,
    lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1, updated_at = :now
    WHERE seq IN (SELECT d.seq FROM outbox AS d WHERE d.status = 'pending'
        AND coalesce(d.age_from, d.created_at) + d.max_age <= :now AND {LEASE_LAPSED})
    RETURNING {shared.OUTBOX_COLUMNS}"""  # noqa: S608
_CLAIMABLE = f"""SELECT d.seq FROM outbox AS d
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now AND {LEASE_LAPSED}
      AND {_HEAD_OF_LINE}
    ORDER BY d.seq LIMIT :limit"""  # noqa: S608
# A claim from anyone else (or of an unleased message) is a new fencing token.
_LEASE = f"""UPDATE outbox SET lease_token = lease_token + (lease_owner IS NOT :owner),
    lease_owner = :owner, lease_until = :until, updated_at = :now
    WHERE seq IN (SELECT value FROM json_each(:seqs))
    RETURNING {shared.OUTBOX_COLUMNS}"""  # noqa: S608
_RECORD = """UPDATE outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?,
    published_at = ?, dead_reason = ?, last_error = ?, lease_owner = NULL, lease_until = NULL,
    updated_at = ? WHERE id = ? AND lease_token = ? AND status = 'pending'"""
_RELEASE_ALL = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?"
_RELEASE = """UPDATE outbox SET lease_owner = NULL, lease_until = NULL
    WHERE lease_owner = ? AND id IN (SELECT value FROM json_each(?))"""
_NEXT_DUE = f"""SELECT min(d.next_attempt_at) FROM outbox AS d
    WHERE d.status = 'pending' AND d.lease_owner IS NULL AND {_HEAD_OF_LINE}"""  # noqa: S608
_GET = f"SELECT {shared.OUTBOX_COLUMNS} FROM outbox WHERE id = ?"  # noqa: S608
_LIST = f"""SELECT {shared.OUTBOX_COLUMNS} FROM outbox
    WHERE (:status IS NULL OR status = :status) AND (:source IS NULL OR source = :source)
      AND (:before IS NULL OR seq < :before)
    ORDER BY seq DESC LIMIT :n"""  # noqa: S608
_REQUEUE = """UPDATE outbox SET status = 'pending', next_attempt_at = :now, age_from = :now,
    dead_reason = NULL, published_at = NULL, lease_owner = NULL, lease_until = NULL,
    lease_token = lease_token + 1, updated_at = :now
    WHERE id = :id AND status IN ('dead', 'published')"""
_COUNTS = "SELECT status, count(*) FROM outbox GROUP BY status"
_OLDEST = "SELECT min(coalesce(age_from, created_at)) FROM outbox WHERE status = 'pending'"
_PURGE = """DELETE FROM outbox WHERE (status = 'published' AND updated_at < ?)
    OR (status = 'dead' AND updated_at < ?)"""


def accept_inbound(
    conn: sqlite3.Connection,
    message: shared.OutboxMessage,
    replay: shared.ReplayNote | None,
    now: float,
) -> bool:
    if replay is not None:
        conn.execute(_PRUNE_IDS, (now,))
        fresh = conn.execute(_REMEMBER, (message.source, replay.key, replay.expires_at, now))
        if fresh.rowcount != 1:
            return False
    conn.execute(_INSERT, shared.insert_values(message, now))
    return True


def claim_outbox(
    conn: sqlite3.Connection, lease: tuple[float, str, float, float], limit: int
) -> shared.OutboxClaim:
    now, owner, until, stale = lease
    params = {"now": now, "owner": owner, "stale": stale, "limit": limit, "until": until}
    expired = [shared.message_from_row(row) for row in conn.execute(_EXPIRE, params).fetchall()]
    if limit <= 0:
        return shared.OutboxClaim([], expired)
    seqs = [row[0] for row in conn.execute(_CLAIMABLE, params).fetchall()]
    if not seqs:
        return shared.OutboxClaim([], expired)
    leased = conn.execute(_LEASE, {**params, "seqs": orjson.dumps(seqs).decode()}).fetchall()
    messages = sorted((shared.message_from_row(row) for row in leased), key=lambda m: m.seq)
    return shared.OutboxClaim(messages, expired)


def record_outbox(
    conn: sqlite3.Connection, outcomes: Sequence[shared.OutboxOutcome], now: float
) -> None:
    rows = [(*shared.outcome_values(o, now), now, o.id, o.lease_token) for o in outcomes]
    conn.executemany(_RECORD, rows)


def release_outbox(conn: sqlite3.Connection, owner: str, ids: Sequence[str] | None) -> None:
    if ids is None:
        conn.execute(_RELEASE_ALL, (owner,))
    elif ids:
        conn.execute(_RELEASE, (owner, orjson.dumps(list(ids)).decode()))


def next_outbox_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(_NEXT_DUE).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def get_outbox(conn: sqlite3.Connection, message_id: str) -> shared.OutboxMessage | None:
    row = conn.execute(_GET, (message_id,)).fetchone()
    return None if row is None else shared.message_from_row(row)


def list_outbox(
    conn: sqlite3.Connection,
    status: shared.OutboxStatus | None,
    source: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[shared.OutboxMessage], str | None]:
    params = {
        "status": None if status is None else status.value,
        "source": source,
        "before": None if cursor is None else shared.decode_outbox_cursor(cursor),
        "n": limit + 1,
    }
    rows = [shared.message_from_row(row) for row in conn.execute(_LIST, params)]
    return shared.page_and_cursor(rows, limit)


def requeue_outbox(conn: sqlite3.Connection, message_id: str, now: float) -> bool:
    return conn.execute(_REQUEUE, {"now": now, "id": message_id}).rowcount > 0


def outbox_stats(conn: sqlite3.Connection) -> shared.OutboxStats:
    counts = {status.value: 0 for status in shared.OutboxStatus}
    counts.update({str(s): int(n) for s, n in conn.execute(_COUNTS)})
    row = conn.execute(_OLDEST).fetchone()
    oldest = None if row is None or row[0] is None else float(row[0])
    return shared.OutboxStats(counts, oldest)


def purge_outbox(conn: sqlite3.Connection, published_before: float, dead_before: float) -> int:
    return conn.execute(_PURGE, (published_before, dead_before)).rowcount
