"""Pipe replies into the outbox, for the PostgreSQL store (see :mod:`bridge.store.outbox`).

Called by ``record_attempts`` inside its transaction, after the outcomes are
applied: an attempt's result and the answer it brought are committed together
or not at all. A reply goes in only while its delivery still carries the
record's lease token. Run after the outcome update, the check sees either our
own update (the row is locked by it) or, when the update was fenced out, the
newer claim's token: a fenced-out result brings no reply. Its id is derived
from the delivery and the attempt, so recording the same attempt twice stores
one reply; ``WITH ORDINALITY`` keeps the records' order in ``seq``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.store.postgres.connect import columns
from bridge.store.rows import AttemptOutcome, AttemptRecord

__all__ = ["commit_replies"]

_INSERT_REPLIES = """INSERT INTO outbox (id, source, topic, payload, status, attempts,
    next_attempt_at, lease_token, created_at, updated_at, max_age, kind, correlation,
    content_type, delivery_id)
    SELECT u.id, u.source, u.topic, u.payload, 'pending', 0, u.created_at, 0, u.created_at,
        u.created_at, u.max_age, 'reply', u.correlation, u.content_type, u.delivery_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::float8[], $6::float8[],
                $7::bytea[], $8::text[], $9::text[], $10::bigint[]) WITH ORDINALITY
        AS u (id, source, topic, payload, created_at, max_age, correlation, content_type,
              delivery_id, token, position)
    JOIN deliveries AS d ON d.id = u.delivery_id
        AND (u.token IS NULL OR d.lease_token = u.token)
    ORDER BY u.position
    ON CONFLICT (id) DO NOTHING"""


async def commit_replies(conn: Any, results: Sequence[tuple[AttemptRecord, AttemptOutcome]]) -> int:
    """Insert the replies the records carry; returns how many records carried one."""
    carried = [(record, record.reply) for record, _ in results if record.reply is not None]
    if not carried:
        return 0
    replies = [reply for _, reply in carried if reply is not None]
    await conn.execute(
        _INSERT_REPLIES,
        *columns(replies, "id source topic payload created_at max_age correlation content_type"),
        [record.delivery_id for record, _ in carried],
        [record.lease_token for record, _ in carried],
    )
    return len(carried)
