"""The SQL of the PostgreSQL store's heartbeats, lease checks
and chunked retention.

Heartbeats are stamped with the server's clock (``now()``) and a lease's
liveness is judged against the same clock, so instances on hosts whose clocks
disagree still agree on who is alive. See :mod:`bridge.store.base` for the
lease rules these statements encode.
"""

from __future__ import annotations

from typing import Any

from bridge.store.common import DELIVERY_COLUMNS
from bridge.store.rows import Claim

__all__ = [
    "DB_NOW",
    "FINISHED",
    "FORGET_INSTANCE",
    "HEARTBEAT",
    "LEASE_DUE",
    "LEASE_LAPSED",
    "NEXT_FENCE",
    "OLDEST_PENDING",
    "PURGE_ATTEMPTS",
    "PURGE_CHUNK",
    "PURGE_DELIVERIES",
    "PURGE_EVENTS",
    "claim_params",
]

DB_NOW = "extract(epoch FROM now())::float8"
HEARTBEAT = f"""INSERT INTO instances (owner, heartbeat_at) VALUES ($1, {DB_NOW})
    ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"""  # noqa: S608
FORGET_INSTANCE = "DELETE FROM instances WHERE owner = $1"
# For claim statements whose $2 is now, $3 the claimer and $6 takeover_after.
# Claimable: unleased; or its holder's heartbeat is stale (dead holder, at once);
# or its lease_until passed and the holder has no heartbeat row (a tool) or is
# the claimer itself (a lease it lost track of; it skips what it still holds).
LEASE_LAPSED = f"""(d.lease_owner IS NULL
    OR EXISTS (SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner
        AND i.heartbeat_at < {DB_NOW} - $6)
    OR (d.lease_until < $2 AND (d.lease_owner = $3 OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner))))"""  # noqa: S608
# The token after a claim by $3: a claim from anyone else is a new fencing token.
NEXT_FENCE = "d.lease_token + CASE WHEN d.lease_owner IS NOT DISTINCT FROM $3 THEN 0 ELSE 1 END"
# The end of a claim: the ``due`` rows chosen (in order, at most $5, locked with
# SKIP LOCKED) are leased to $3 until $4 at $2 and returned with their events.
# The outer ORDER BY restores the order ``due`` chose (UPDATE ... RETURNING has none).
LEASE_DUE = f"""ORDER BY d.next_attempt_at, d.seq LIMIT $5
        FOR UPDATE OF d SKIP LOCKED),
    leased AS (
        UPDATE deliveries AS d SET lease_token = {NEXT_FENCE},
          lease_owner = $3, lease_until = $4, updated_at = $2
        FROM due WHERE d.id = due.id
        RETURNING d.*)
    SELECT {DELIVERY_COLUMNS} FROM leased AS d JOIN events AS e ON e.id = d.event_id
    ORDER BY d.next_attempt_at, d.seq"""  # noqa: S608
OLDEST_PENDING = """SELECT s.name, (SELECT min(created_at) FROM deliveries
        WHERE subscription = s.name AND status = 'pending')
    FROM unnest($1::text[]) AS s (name)"""

# Retention works in chunks of PURGE_CHUNK rows, one transaction each, so no
# long transaction holds row locks ingest and claims wait for.
PURGE_CHUNK = 1000
FINISHED = """SELECT id FROM deliveries
    WHERE (status = 'delivered' AND updated_at < $1) OR (status = 'dead' AND updated_at < $2)
    LIMIT $3 FOR UPDATE SKIP LOCKED"""
PURGE_ATTEMPTS = "DELETE FROM attempts WHERE delivery_id = ANY($1::text[])"
PURGE_DELIVERIES = "DELETE FROM deliveries WHERE id = ANY($1::text[])"
PURGE_EVENTS = """DELETE FROM events WHERE id IN (SELECT id FROM events
    WHERE received_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = events.id)
    LIMIT $2)"""


def claim_params(claim: Claim) -> tuple[Any, ...]:
    """A claim's parameters in the order every claim statement numbers them: $1
    subscription, $2 now, $3 owner, $4 lease_until, $5 limit, $6 stale."""
    return claim.subscription, claim.now, claim.owner, claim.lease_until, claim.limit, claim.stale
