"""The MQTT outbox's SQL for the PostgreSQL store (see :mod:`bridge.store.outbox`).

Claims lock their candidate rows with ``FOR UPDATE SKIP LOCKED``: two
instances claiming at once each take other topics' heads, never the same
message. Lease liveness follows the rule of
:data:`bridge.store.postgres.leases.LEASE_LAPSED`, judged against the
server's clock. f-strings here only join constant fragments; values are bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store import outbox as shared
from bridge.store.postgres import queries as sql
from bridge.store.postgres.leases import DB_NOW

__all__ = list(shared.OUTBOX_OPERATIONS)  # a backend has each outbox operation, no more


def _lapsed(now: str, owner: str, stale: str) -> str:
    """The lease rule of ``leases.LEASE_LAPSED`` with this statement's placeholders."""
    return f"""(d.lease_owner IS NULL
    OR EXISTS (SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner
        AND i.heartbeat_at < {DB_NOW} - {stale})
    OR (d.lease_until < {now} AND (d.lease_owner = {owner} OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner))))"""  # noqa: S608


_PRUNE_IDS = "DELETE FROM inbound_ids WHERE expires_at < $1"
# Inserts a new id, or renews one whose time ran out; an unexpired one returns no row.
_REMEMBER = """INSERT INTO inbound_ids (source, msg_id, expires_at) VALUES ($1, $2, $3)
    ON CONFLICT (source, msg_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE inbound_ids.expires_at < $4
    RETURNING 1"""
_INSERT = """INSERT INTO outbox (id, source, topic, payload, status, attempts, next_attempt_at,
    lease_token, created_at, updated_at, max_age) VALUES ($1, $2, $3, $4, 'pending', 0, $5, 0,
    $5, $6, $7)"""
_HEAD_OF_LINE = """NOT EXISTS (SELECT 1 FROM outbox AS e
    WHERE e.topic = d.topic AND e.status = 'pending' AND e.seq < d.seq)"""
# $1 now, $2 owner, $3 takeover_after.
_EXPIRE = f"""UPDATE outbox SET status = 'dead', dead_reason = '{shared.TOO_OLD}',
    next_attempt_at = NULL,
    lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1, updated_at = $1
    WHERE seq IN (SELECT d.seq FROM outbox AS d WHERE d.status = 'pending'
        AND coalesce(d.age_from, d.created_at) + d.max_age <= $1
        AND {_lapsed("$1", "$2", "$3")} FOR UPDATE SKIP LOCKED)
    RETURNING {shared.OUTBOX_COLUMNS}"""  # noqa: S608
_COLUMNS_OF_O = ", ".join(f"o.{c.strip()}" for c in shared.OUTBOX_COLUMNS.split(","))
# $1 limit, $2 now, $3 owner, $4 lease_until, $5 takeover_after. A claim from
# anyone else (or of an unleased message) is a new fencing token.
_CLAIM = f"""UPDATE outbox AS o SET
    lease_token = o.lease_token + CASE WHEN o.lease_owner IS NOT DISTINCT FROM $3 THEN 0 ELSE 1 END,
    lease_owner = $3, lease_until = $4, updated_at = $2
    FROM (SELECT d.seq FROM outbox AS d
        WHERE d.status = 'pending' AND d.next_attempt_at <= $2 AND {_lapsed("$2", "$3", "$5")}
          AND {_HEAD_OF_LINE}
        ORDER BY d.seq LIMIT $1 FOR UPDATE SKIP LOCKED) AS c
    WHERE o.seq = c.seq
    RETURNING {_COLUMNS_OF_O}"""  # noqa: S608
_RECORD = """UPDATE outbox SET status = $1, attempts = attempts + 1, next_attempt_at = $2,
    published_at = $3, dead_reason = $4, last_error = $5, lease_owner = NULL, lease_until = NULL,
    updated_at = $6 WHERE id = $7 AND lease_token = $8 AND status = 'pending'"""
_RELEASE_ALL = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1"
_RELEASE = """UPDATE outbox SET lease_owner = NULL, lease_until = NULL
    WHERE lease_owner = $1 AND id = ANY($2::text[])"""
_NEXT_DUE = f"""SELECT min(d.next_attempt_at) FROM outbox AS d
    WHERE d.status = 'pending' AND d.lease_owner IS NULL AND {_HEAD_OF_LINE}"""  # noqa: S608
_GET = f"SELECT {shared.OUTBOX_COLUMNS} FROM outbox WHERE id = $1"  # noqa: S608
_LIST = f"""SELECT {shared.OUTBOX_COLUMNS} FROM outbox
    WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR source = $2)
      AND ($3::bigint IS NULL OR seq < $3)
    ORDER BY seq DESC LIMIT $4"""  # noqa: S608
_REQUEUE = """UPDATE outbox SET status = 'pending', next_attempt_at = $1, age_from = $1,
    dead_reason = NULL, published_at = NULL, lease_owner = NULL, lease_until = NULL,
    lease_token = lease_token + 1, updated_at = $1
    WHERE id = $2 AND status IN ('dead', 'published')"""
_COUNTS = "SELECT status, count(*) FROM outbox GROUP BY status"
_OLDEST = "SELECT min(coalesce(age_from, created_at)) FROM outbox WHERE status = 'pending'"
_PURGE = """DELETE FROM outbox WHERE (status = 'published' AND updated_at < $1)
    OR (status = 'dead' AND updated_at < $2)"""


async def accept_inbound(
    conn: Any, message: shared.OutboxMessage, replay: shared.ReplayNote | None, now: float
) -> bool:
    if replay is not None:
        await conn.execute(_PRUNE_IDS, now)
        fresh = await conn.fetchval(_REMEMBER, message.source, replay.key, replay.expires_at, now)
        if fresh is None:
            return False
    await conn.execute(_INSERT, *shared.insert_values(message, now))
    return True


async def claim_outbox(
    conn: Any, lease: tuple[float, str, float, float], limit: int
) -> shared.OutboxClaim:
    now, owner, until, stale = lease
    expired = [shared.message_from_row(row) for row in await conn.fetch(_EXPIRE, now, owner, stale)]
    if limit <= 0:
        return shared.OutboxClaim([], expired)
    rows = await conn.fetch(_CLAIM, limit, now, owner, until, stale)
    messages = sorted((shared.message_from_row(row) for row in rows), key=lambda m: m.seq)
    return shared.OutboxClaim(messages, expired)


async def record_outbox(conn: Any, outcomes: Sequence[shared.OutboxOutcome], now: float) -> None:
    rows = [(*shared.outcome_values(o, now), now, o.id, o.lease_token) for o in outcomes]
    await conn.executemany(_RECORD, rows)


async def release_outbox(conn: Any, owner: str, ids: Sequence[str] | None) -> None:
    if ids is None:
        await conn.execute(_RELEASE_ALL, owner)
    elif ids:
        await conn.execute(_RELEASE, owner, list(ids))


async def next_outbox_due(conn: Any) -> float | None:
    value = await conn.fetchval(_NEXT_DUE)
    return None if value is None else float(value)


async def get_outbox(conn: Any, message_id: str) -> shared.OutboxMessage | None:
    row = await conn.fetchrow(_GET, message_id)
    return None if row is None else shared.message_from_row(row)


async def list_outbox(
    conn: Any,
    status: shared.OutboxStatus | None,
    source: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[shared.OutboxMessage], str | None]:
    before = None if cursor is None else shared.decode_outbox_cursor(cursor)
    rows = await conn.fetch(
        _LIST, None if status is None else status.value, source, before, limit + 1
    )
    return shared.page_and_cursor([shared.message_from_row(row) for row in rows], limit)


async def requeue_outbox(conn: Any, message_id: str, now: float) -> bool:
    return sql.rowcount(await conn.execute(_REQUEUE, now, message_id)) > 0


async def outbox_stats(conn: Any) -> shared.OutboxStats:
    counts = {status.value: 0 for status in shared.OutboxStatus}
    counts.update({str(row[0]): int(row[1]) for row in await conn.fetch(_COUNTS)})
    oldest = await conn.fetchval(_OLDEST)
    return shared.OutboxStats(counts, None if oldest is None else float(oldest))


async def purge_outbox(conn: Any, published_before: float, dead_before: float) -> int:
    return sql.rowcount(await conn.execute(_PURGE, published_before, dead_before))
