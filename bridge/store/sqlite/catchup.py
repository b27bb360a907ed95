"""The SQLite store's catch-up and send-now operations (see :mod:`bridge.store.catchup`).

They run on the store's writer thread inside ``BEGIN IMMEDIATE``: no other writer
comes between a read and the write that follows it.
"""

from __future__ import annotations

import sqlite3

from bridge.store import statements as shared
from bridge.store.catchup import SendNow, send_now_answer
from bridge.store.rows import CatchUp
from bridge.store.sqlite.leases import LEASE_LAPSED

__all__ = ["catch_up", "end_streak", "flush_chunk", "send_now"]

_CAUGHT_UP = shared.CAUGHT_UP.format(lock="")
# Named parameters :now, :owner and :stale as LEASE_LAPSED reads them; the owner is
# nobody (an operator), so only a dead holder's or a run-out lease lapses.
_STANDING = f"SELECT d.status, {LEASE_LAPSED} FROM deliveries AS d WHERE d.id = :id"  # noqa: S608
# Already due: it is not early, its schedule brought it here.
_SEND_NOW = """UPDATE deliveries SET early = CASE WHEN next_attempt_at > :now THEN 1 ELSE early END,
    next_attempt_at = min(next_attempt_at, :now) WHERE id = :id"""
_FLUSH = f"""UPDATE deliveries SET next_attempt_at = :now, early = 1
    WHERE id IN (SELECT d.id FROM deliveries AS d
        WHERE d.subscription = :sub AND d.status = 'pending' AND d.next_attempt_at > :now
          AND {LEASE_LAPSED} LIMIT :limit)"""  # noqa: S608 - constant fragments only


def end_streak(conn: sqlite3.Connection, subscription: str, now: float) -> bool:
    return conn.execute(shared.END_STREAK, (subscription, now)).rowcount > 0


def catch_up(
    conn: sqlite3.Connection,
    subscription: str,
    now: float,
    after: tuple[float, str] | None,
    limit: int,
) -> CatchUp:
    state = conn.execute(shared.CATCH_UP_STATE, (subscription,)).fetchone()
    if state is None or state[0] is None:
        return CatchUp(0, done=True)
    mark, failing_since = state
    if failing_since is not None:
        conn.execute(shared.CLEAR_CATCH_UP, (subscription, mark))
        return CatchUp(0, done=True)
    low_at, low_id = after if after is not None else (float("-inf"), "")
    released = conn.execute(_CAUGHT_UP, (subscription, now, mark, low_at, low_id, limit))
    found = [(float(row[0]), str(row[1])) for row in released.fetchall()]
    if len(found) < limit:
        conn.execute(shared.CLEAR_CATCH_UP, (subscription, mark))
    return CatchUp(len(found), done=len(found) < limit, cursor=max(found, default=after))


def send_now(
    conn: sqlite3.Connection, delivery_id: str, now: float, stale: float
) -> SendNow | None:
    params = {"id": delivery_id, "now": now, "owner": "", "stale": stale}
    answer = send_now_answer(conn.execute(_STANDING, params).fetchone())
    if answer is SendNow.DUE:
        conn.execute(_SEND_NOW, {"id": delivery_id, "now": now})
    return answer


def flush_chunk(
    conn: sqlite3.Connection, subscription: str, now: float, stale: float, limit: int
) -> int:
    params = {"sub": subscription, "now": now, "owner": "", "stale": stale, "limit": limit}
    return conn.execute(_FLUSH, params).rowcount
