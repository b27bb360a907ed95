"""Pipe replies into the outbox, for the SQLite store (see :mod:`bridge.store.outbox`).

Called by ``record_attempts`` inside its transaction, after the outcomes are
applied: an attempt's result and the answer it brought are committed together
or not at all. A reply goes in only while its delivery still carries the
record's lease token (a result fenced out by a newer claim brings no reply: the
newer holder's attempt answers). Its id is derived from the delivery and the
attempt, so recording the same attempt twice stores one reply.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bridge.store.rows import AttemptOutcome, AttemptRecord

__all__ = ["commit_replies"]

_INSERT_REPLY = """INSERT INTO outbox (id, source, topic, payload, status, attempts,
    next_attempt_at, lease_token, created_at, updated_at, max_age, kind, correlation,
    content_type, delivery_id)
    SELECT ?1, ?2, ?3, ?4, 'pending', 0, ?5, 0, ?5, ?5, ?6, 'reply', ?7, ?8, ?9
    WHERE EXISTS (SELECT 1 FROM deliveries
        WHERE id = ?9 AND (?10 IS NULL OR lease_token = ?10))
    ON CONFLICT (id) DO NOTHING"""


def commit_replies(
    conn: sqlite3.Connection, results: Sequence[tuple[AttemptRecord, AttemptOutcome]]
) -> int:
    """Insert the replies the records carry; returns how many records carried one."""
    rows = [
        (
            reply.id,
            reply.source,
            reply.topic,
            reply.payload,
            reply.created_at,
            reply.max_age,
            reply.correlation,
            reply.content_type,
            record.delivery_id,
            record.lease_token,
        )
        for record, _ in results
        if (reply := record.reply) is not None
    ]
    if rows:
        conn.executemany(_INSERT_REPLY, rows)
    return len(rows)
