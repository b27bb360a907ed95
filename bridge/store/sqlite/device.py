"""The per-device SQL of the SQLite store: presence rows and ordered (FIFO per device) claims.

Like :mod:`bridge.store.sqlite_queries`, everything here runs on the store's
one thread inside a transaction it opened, and never commits. The presence
decisions themselves are :func:`bridge.presence.decide`; this module only
reads and writes the rows it decides on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace

import orjson

from bridge.core.presence import PresenceState
from bridge.store.common import (
    DELIVERY_COLUMNS,
    FROM_DELIVERIES,
    PRESENCE_COLUMNS,
    decide_presence,
    decide_timeouts,
    observed_devices,
    presence_from_row,
)
from bridge.store.rows import Accepted, PresencePolicy
from bridge.store.sqlite.leases import LEASE_LAPSED

__all__ = [
    "CLAIMABLE_ORDERED",
    "DEVICES",
    "GET_PRESENCE",
    "NEXT_DUE_ORDERED",
    "apply_presence",
    "timed_out",
]

# FIFO per (subscription, device) by creation order (the rowid): only a device's
# oldest pending delivery may go, and only while nobody else holds it. The heads
# are found by walking the partial index deliveries_pending_device from one
# device to the next (one probe per device with pending deliveries) instead of
# scanning the backlog: a claim costs the same at 50 or 50,000 pending.
# f-strings here only join constant fragments; values are always bound (:name).
# DEVICES starts a WITH RECURSIVE whose ``devices`` are those with pending deliveries.
DEVICES = """WITH RECURSIVE devices (device_id) AS (
        SELECT min(device_id) FROM deliveries
        WHERE subscription = :sub AND status = 'pending' AND device_id IS NOT NULL
        UNION ALL
        SELECT (SELECT min(n.device_id) FROM deliveries AS n
                WHERE n.subscription = :sub AND n.status = 'pending'
                  AND n.device_id > devices.device_id)
        FROM devices WHERE devices.device_id IS NOT NULL)"""
_HEADS = f"""{DEVICES},
    heads (rid) AS (
        SELECT (SELECT min(h.rowid) FROM deliveries AS h
                WHERE h.subscription = :sub AND h.status = 'pending'
                  AND h.device_id = devices.device_id)
        FROM devices WHERE devices.device_id IS NOT NULL)"""  # noqa: S608
# Deliveries without a device id are not held back.
_CANDIDATES = """(SELECT rid FROM heads
        UNION ALL
        SELECT rowid FROM deliveries
        WHERE subscription = :sub AND status = 'pending' AND device_id IS NULL)"""
CLAIMABLE_ORDERED = f"""{_HEADS}
    SELECT {DELIVERY_COLUMNS} {FROM_DELIVERIES}
    WHERE d.rowid IN {_CANDIDATES} AND d.next_attempt_at <= :now AND {LEASE_LAPSED}
    ORDER BY d.next_attempt_at, d.rowid LIMIT :limit"""
NEXT_DUE_ORDERED = f"""{_HEADS}
    SELECT min(d.next_attempt_at) FROM deliveries AS d
    WHERE d.rowid IN {_CANDIDATES} AND d.lease_until IS NULL"""  # noqa: S608

GET_PRESENCE = f"""SELECT {PRESENCE_COLUMNS} FROM presence
    WHERE account = ? AND device_id = ?"""  # noqa: S608
# The rows of (account, device id) pairs, given as one JSON array of pairs.
_PRESENCE_OF = f"""SELECT {PRESENCE_COLUMNS} FROM presence
    WHERE (account, device_id) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"""  # noqa: S608
# A device's own timeout, else the default (NULL: none, and NULL never compares true).
_TIMED_OUT = f"""SELECT {PRESENCE_COLUMNS} FROM presence
    WHERE state = 'online' AND last_seen + coalesce(heartbeat, ?) < ?
    ORDER BY last_seen LIMIT ?"""  # noqa: S608
_SAVE_PRESENCE = f"""INSERT INTO presence ({PRESENCE_COLUMNS})
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (account, device_id) DO UPDATE SET state = excluded.state,
      last_seen = excluded.last_seen, changed_at = excluded.changed_at,
      reason = excluded.reason, heartbeat = excluded.heartbeat"""  # noqa: S608
_EXISTING_IDS = "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))"


# A sighting that changes nothing but the time a device was last seen: one column,
# so the state index (state, device_id) is not rewritten (the upsert sets every column).
_SEEN = "UPDATE presence SET last_seen = ? WHERE account = ? AND device_id = ?"


def _save(
    conn: sqlite3.Connection,
    states: Sequence[PresenceState],
    stored: Mapping[tuple[str, str], PresenceState] | None = None,
) -> None:
    known = stored or {}
    seen = [s for s in states if _only_seen(known.get((s.account, s.device_id)), s)]
    if seen:
        conn.executemany(_SEEN, [(s.last_seen, s.account, s.device_id) for s in seen])
    conn.executemany(
        _SAVE_PRESENCE,
        [
            (
                s.device_id,
                s.state.value,
                s.last_seen,
                s.changed_at,
                s.reason,
                s.heartbeat,
                s.account,
            )
            for s in states
            if not _only_seen(known.get((s.account, s.device_id)), s)
        ],
    )


def _only_seen(before: PresenceState | None, after: PresenceState) -> bool:
    return before is not None and replace(before, last_seen=after.last_seen) == after


def apply_presence(
    conn: sqlite3.Connection, fresh: Sequence[Accepted], policy: PresencePolicy, now: float
) -> tuple[list[Accepted], int]:
    """The batch with presence decided: synthetic events inserted, repeats undelivered.

    Returns the new list (in the order to store) and how many events were collapsed.
    """
    devices = observed_devices(fresh)
    if not devices:
        return list(fresh), 0
    rows = conn.execute(_PRESENCE_OF, (orjson.dumps(devices).decode(),))
    known = {(row[6], row[0]): presence_from_row(row) for row in rows}
    batch = decide_presence(fresh, known, policy, now)
    _save(conn, batch.changed, known)
    return _without_stored_synthetics(conn, batch.items, batch.synthetic), batch.collapsed


def _without_stored_synthetics(
    conn: sqlite3.Connection, items: list[Accepted], synthetic: list[Accepted]
) -> list[Accepted]:
    """Drop synthetic events whose stable id is already stored (another instance emitted it)."""
    if not synthetic:
        return items
    ids = orjson.dumps([item.event.id for item in synthetic]).decode()
    stored = {row[0] for row in conn.execute(_EXISTING_IDS, (ids,))}
    made = {id(item) for item in synthetic}
    seen: set[str] = set()
    kept: list[Accepted] = []
    for item in items:
        if id(item) in made:
            if item.event.id in stored or item.event.id in seen:
                continue
            seen.add(item.event.id)
        kept.append(item)
    return kept


def timed_out(
    conn: sqlite3.Connection, policy: PresencePolicy, now: float, limit: int
) -> list[Accepted]:
    """Online devices silent past their timeout become offline; their announced events."""
    rows = conn.execute(_TIMED_OUT, (policy.offline_after, now, limit)).fetchall()
    changed, announced = decide_timeouts(map(presence_from_row, rows), policy, now)
    _save(conn, changed)
    return announced
