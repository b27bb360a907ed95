"""The per-device SQL of the PostgreSQL store: presence rows and ordered (FIFO per device) claims.

Presence is decided by :func:`bridge.presence.decide` inside the ingest
transaction, so several instances must see each other's decisions in order.
Two locks make that so:

* a transaction-scoped advisory lock per device seen in the batch, taken in
  sorted order (no deadlock between two batches), serialises ingests that
  touch the same device, including its very first message (no row to lock yet);
* ``SELECT … FOR UPDATE`` on the existing rows makes an ingest wait for the
  timeout scanner, which claims stale rows with ``FOR UPDATE SKIP LOCKED``
  (so two scanners never emit the same timeout, and a scanner never blocks).

Ordered claims are safe across instances without extra locks: a delivery is
claimable only while no earlier delivery of its (subscription, device) is
pending, and a leased delivery stays pending until its attempt is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.core.presence import PresenceState
from bridge.store import common
from bridge.store.postgres.leases import LEASE_DUE, LEASE_LAPSED
from bridge.store.rows import Accepted, PresencePolicy

__all__ = [
    "CLAIM_ORDERED",
    "DEVICES",
    "GET_PRESENCE",
    "NEXT_DUE_ORDERED",
    "apply_presence",
    "lock_devices",
    "timed_out",
]

# FIFO per (subscription, device) by creation order (seq): only a device's
# oldest pending delivery may go, and only while nobody else holds it. The heads
# are found by walking the partial index deliveries_pending_device from one
# device to the next (a loose index scan: one probe per device with pending
# deliveries) instead of scanning the backlog: a claim costs the same at 50 or
# 50,000 pending. Deliveries without a device id are not held back.
# f-strings here only join constant fragments; values are always $n.
# DEVICES starts a WITH RECURSIVE whose ``devices`` are those with pending deliveries.
DEVICES = """WITH RECURSIVE devices (device_id) AS (
        (SELECT device_id FROM deliveries
         WHERE subscription = $1 AND status = 'pending' AND device_id IS NOT NULL
         ORDER BY device_id LIMIT 1)
        UNION ALL
        SELECT (SELECT n.device_id FROM deliveries AS n
                WHERE n.subscription = $1 AND n.status = 'pending'
                  AND n.device_id > devices.device_id
                ORDER BY n.device_id LIMIT 1)
        FROM devices WHERE devices.device_id IS NOT NULL)"""
_HEADS = f"""{DEVICES},
    heads (id) AS (
        SELECT (SELECT h.id FROM deliveries AS h
                WHERE h.subscription = $1 AND h.status = 'pending'
                  AND h.device_id = devices.device_id
                ORDER BY h.seq LIMIT 1)
        FROM devices WHERE devices.device_id IS NOT NULL
        UNION ALL
        SELECT id FROM deliveries
        WHERE subscription = $1 AND status = 'pending' AND device_id IS NULL)"""  # noqa: S608
CLAIM_ORDERED = f"""{_HEADS},
    due AS (
        SELECT d.id FROM deliveries AS d
        WHERE d.id IN (SELECT id FROM heads)
          AND d.status = 'pending' AND d.next_attempt_at <= $2
          AND {LEASE_LAPSED}
        {LEASE_DUE}"""  # noqa: S608
NEXT_DUE_ORDERED = f"""{_HEADS}
    SELECT min(d.next_attempt_at) FROM deliveries AS d
    WHERE d.id IN (SELECT id FROM heads) AND d.lease_until IS NULL"""  # noqa: S608

GET_PRESENCE = f"""SELECT {common.PRESENCE_COLUMNS} FROM presence
    WHERE account = $1 AND device_id = $2"""  # noqa: S608
# OFFSET 0 keeps the sort below the lock calls: the locks are taken in device order.
# A device of no account keeps the key it had before accounts ('presence:' || id).
_LOCK_DEVICES = """SELECT count(pg_advisory_xact_lock(k)) FROM (
    SELECT DISTINCT hashtextextended(
        'presence:' || CASE WHEN a = '' THEN d ELSE a || '/' || d END, 0) AS k
    FROM unnest($1::text[], $2::text[]) AS u (a, d) ORDER BY k OFFSET 0) AS sorted"""
_PRESENCE_OF = f"""SELECT {common.PRESENCE_COLUMNS} FROM presence
    WHERE (account, device_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
    ORDER BY account, device_id FOR UPDATE"""  # noqa: S608
_TIMED_OUT = f"""SELECT {common.PRESENCE_COLUMNS} FROM presence
    WHERE state = 'online' AND last_seen + coalesce(heartbeat, $1::float8) < $2
    ORDER BY last_seen LIMIT $3
    FOR UPDATE SKIP LOCKED"""  # noqa: S608
_SAVE_PRESENCE = f"""INSERT INTO presence ({common.PRESENCE_COLUMNS})
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::text[],
      $6::float8[], $7::text[])
    ON CONFLICT (account, device_id) DO UPDATE SET state = excluded.state,
      last_seen = excluded.last_seen, changed_at = excluded.changed_at,
      reason = excluded.reason, heartbeat = excluded.heartbeat"""  # noqa: S608


async def lock_devices(conn: Any, accepted: Sequence[Accepted]) -> None:
    """Take the per-device advisory locks of a batch (held until the transaction ends)."""
    devices = common.observed_devices(accepted)
    if devices:
        await conn.fetchval(_LOCK_DEVICES, *_columns(devices))


def _columns(devices: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(accounts, device ids) of (account, device id) pairs, as two arrays."""
    return [account for account, _ in devices], [device for _, device in devices]


async def _save(conn: Any, states: Sequence[PresenceState]) -> None:
    if states:
        await conn.execute(
            _SAVE_PRESENCE,
            [s.device_id for s in states],
            [s.state.value for s in states],
            [s.last_seen for s in states],
            [s.changed_at for s in states],
            [s.reason for s in states],
            [s.heartbeat for s in states],
            [s.account for s in states],
        )


async def apply_presence(
    conn: Any, fresh: Sequence[Accepted], policy: PresencePolicy, now: float
) -> tuple[list[Accepted], int, list[Accepted]]:
    """The batch with presence decided: synthetic events inserted, repeats undelivered.

    Returns the new list (in the order to store), how many events were collapsed
    and the synthetic events among the list.
    The caller holds the device locks (:func:`lock_devices`) and drops synthetic
    events whose stable id is stored already (another instance emitted them).
    """
    observed = common.observed_devices(fresh)
    if not observed:
        return list(fresh), 0, []
    rows = await conn.fetch(_PRESENCE_OF, *_columns(observed))
    batch = common.decide_presence(
        fresh, {(row[6], row[0]): common.presence_from_row(row) for row in rows}, policy, now
    )
    await _save(conn, batch.changed)
    return batch.items, batch.collapsed, batch.synthetic


async def timed_out(conn: Any, policy: PresencePolicy, now: float, limit: int) -> list[Accepted]:
    """Online devices silent past their timeout become offline; their announced events."""
    rows = await conn.fetch(_TIMED_OUT, policy.offline_after, now, limit)
    changed, announced = common.decide_timeouts(map(common.presence_from_row, rows), policy, now)
    await _save(conn, changed)
    return announced
