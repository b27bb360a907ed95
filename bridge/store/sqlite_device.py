"""The per-device SQL of the SQLite store: presence rows and ordered (FIFO per device) claims.

Like :mod:`bridge.store.sqlite_queries`, everything here runs on the store's
one thread inside a transaction it opened, and never commits. The presence
decisions themselves are :func:`bridge.presence.decide`; this module only
reads and writes the rows it decides on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from bridge.presence import Observation, Presence, PresenceState, decide
from bridge.store.base import Accepted, PresencePolicy

__all__ = [
    "CLAIMABLE_ORDERED",
    "GET_PRESENCE",
    "NEXT_DUE_ORDERED",
    "apply_presence",
    "presence_from_row",
    "timed_out",
]

# FIFO per (subscription, device) by creation order (the rowid): only a device's
# oldest pending delivery may go, and only while nobody else holds it. The
# partial index deliveries_pending_device answers the NOT EXISTS with one probe.
# (Plain literals, not f-strings: the texts are constants, checked as such.)
CLAIMABLE_ORDERED = """SELECT d.id, d.subscription, d.attempts, d.created_at, d.status,
    d.next_attempt_at, e.body, d.dead_reason, d.last_status_code, d.last_error
    FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
    WHERE d.subscription = ? AND d.status = 'pending' AND d.next_attempt_at <= ?
      AND (d.lease_until IS NULL OR d.lease_until < ?)
      AND (d.device_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries AS p
        WHERE p.subscription = d.subscription AND p.device_id = d.device_id
          AND p.status = 'pending' AND p.rowid < d.rowid))
    ORDER BY d.next_attempt_at, d.rowid LIMIT ?"""
NEXT_DUE_ORDERED = """SELECT min(d.next_attempt_at) FROM deliveries AS d
    WHERE d.subscription = ? AND d.status = 'pending' AND d.lease_until IS NULL
      AND (d.device_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries AS p
        WHERE p.subscription = d.subscription AND p.device_id = d.device_id
          AND p.status = 'pending' AND p.rowid < d.rowid))"""

GET_PRESENCE = """SELECT device_id, state, last_seen, changed_at, reason
    FROM presence WHERE device_id = ?"""
_PRESENCE_OF = """SELECT device_id, state, last_seen, changed_at, reason FROM presence
    WHERE device_id IN (SELECT value FROM json_each(?))"""
_TIMED_OUT = """SELECT device_id, state, last_seen, changed_at, reason FROM presence
    WHERE state = 'online' AND last_seen < ? ORDER BY last_seen LIMIT ?"""
_SAVE_PRESENCE = """INSERT INTO presence (device_id, state, last_seen, changed_at, reason)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (device_id) DO UPDATE SET state = excluded.state,
      last_seen = excluded.last_seen, changed_at = excluded.changed_at,
      reason = excluded.reason"""
_EXISTING_IDS = "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))"


def presence_from_row(row: Sequence[Any]) -> PresenceState:
    return PresenceState(row[0], Presence(row[1]), row[2], row[3], row[4])


def _save(conn: sqlite3.Connection, states: Sequence[PresenceState]) -> None:
    conn.executemany(
        _SAVE_PRESENCE,
        [(s.device_id, s.state.value, s.last_seen, s.changed_at, s.reason) for s in states],
    )


def apply_presence(
    conn: sqlite3.Connection, fresh: Sequence[Accepted], policy: PresencePolicy, now: float
) -> tuple[list[Accepted], int]:
    """The batch with presence decided: synthetic events inserted, repeats undelivered.

    Returns the new list (in the order to store) and how many events were collapsed.
    """
    observed = [item.presence for item in fresh if item.presence is not None]
    if not observed:
        return list(fresh), 0
    devices = orjson.dumps(sorted({o.device_id for o in observed})).decode()
    states: dict[str, PresenceState | None] = {
        row[0]: presence_from_row(row) for row in conn.execute(_PRESENCE_OF, (devices,))
    }
    changed: dict[str, PresenceState] = {}
    result: list[Accepted] = []
    synthetic: list[Accepted] = []
    collapsed = 0
    for item in fresh:
        observation: Observation | None = item.presence
        if observation is None:
            result.append(item)
            continue
        decision = decide(states.get(observation.device_id), observation, now, policy.offline_after)
        if decision.state is not None:
            states[observation.device_id] = decision.state
            changed[observation.device_id] = decision.state
        announced = [policy.announce(transition) for transition in decision.emit]
        synthetic.extend(announced)
        result.extend(announced)
        if decision.keep_event:
            result.append(item)
        else:
            collapsed += 1
            result.append(replace(item, subscriptions=()))
    _save(conn, list(changed.values()))
    return _without_stored_synthetics(conn, result, synthetic), collapsed


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
    """Online devices silent past ``offline_after`` become offline; their announced events."""
    rows = conn.execute(_TIMED_OUT, (now - policy.offline_after, limit)).fetchall()
    changed: list[PresenceState] = []
    announced: list[Accepted] = []
    for row in rows:
        decision = decide(presence_from_row(row), None, now, policy.offline_after)
        if decision.state is None or not decision.emit:
            continue
        changed.append(decision.state)
        announced.extend(policy.announce(transition) for transition in decision.emit)
    _save(conn, changed)
    return announced
