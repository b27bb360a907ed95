"""The SQL of the SQLite store's heartbeats, and lease checks.

The heartbeat is stamped with SQLite's own clock (``julianday('now')``, the
host's clock, as every process sharing the file sees it), and a lease's
liveness is judged against the same clock, never against a caller's ``now``.
See :mod:`bridge.store.base` for the lease rules these statements encode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from bridge.store import common
from bridge.store.rows import Claim, Delivery

__all__ = [
    "DB_NOW",
    "FORGET_INSTANCE",
    "HEARTBEAT",
    "LEASE",
    "LEASE_LAPSED",
    "OLDEST_PENDING",
    "lease_claimed",
]

# Epoch seconds from SQLite's clock.
DB_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
HEARTBEAT = f"""INSERT INTO instances (owner, heartbeat_at) VALUES (?, {DB_NOW})
    ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"""  # noqa: S608
FORGET_INSTANCE = "DELETE FROM instances WHERE owner = ?"
# Named parameters :now, :owner (the claimer) and :stale (takeover_after seconds).
# Claimable: unleased; or its holder's heartbeat is stale (dead holder, at once);
# or its lease_until passed and the holder has no heartbeat row (a tool) or is
# the claimer itself (a lease it lost track of; it skips what it still holds).
LEASE_LAPSED = f"""(d.lease_owner IS NULL
    OR EXISTS (SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner
        AND i.heartbeat_at < {DB_NOW} - :stale)
    OR (d.lease_until < :now AND (d.lease_owner = :owner OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.owner = d.lease_owner))))"""  # noqa: S608
# A claim from anyone else (or of an unleased delivery) is a new fencing token.
LEASE = """UPDATE deliveries SET lease_token = lease_token + (lease_owner IS NOT :owner),
    lease_owner = :owner, lease_until = :until, updated_at = :now
    WHERE id IN (SELECT value FROM json_each(:ids))
    RETURNING id, lease_token"""
OLDEST_PENDING = """SELECT min(created_at) FROM deliveries
    WHERE subscription = ? AND status = 'pending'"""


def lease_claimed(conn: sqlite3.Connection, records: Sequence[Any], claim: Claim) -> list[Delivery]:
    """Lease the claimable rows a claim's SELECT found (``DELIVERY_COLUMNS`` rows) to
    its owner, each with its new fencing token; the write lock (``BEGIN IMMEDIATE``)
    keeps another claimer from taking the same rows in between."""
    if not records:
        return []
    ids = orjson.dumps([row[0] for row in records]).decode()
    taken = {"owner": claim.owner, "until": claim.lease_until, "now": claim.now, "ids": ids}
    tokens = dict(conn.execute(LEASE, taken).fetchall())
    claimed = [common.delivery_from_row(row) for row in records]
    return [replace(d, lease_token=tokens.get(d.id, d.lease_token)) for d in claimed]
