"""The PostgreSQL store's catch-up and send-now operations (see :mod:`bridge.store.catchup`).

Rows another instance is changing are skipped (``SKIP LOCKED``) or waited for
(``FOR UPDATE`` on the one delivery an operator names), never changed twice.
"""

from __future__ import annotations

from typing import Any

from bridge.store import statements as shared
from bridge.store.catchup import SendNow, send_now_answer
from bridge.store.postgres.leases import LEASE_LAPSED
from bridge.store.postgres.queries import rowcount
from bridge.store.rows import CatchUp
from bridge.store.statements import numbered as pg

__all__ = ["catch_up", "end_streak", "flush_chunk", "send_now"]

_CAUGHT_UP = pg(shared.CAUGHT_UP.format(lock=" FOR UPDATE SKIP LOCKED"))
# LEASE_LAPSED with $2 now, $3 the claimer (nobody: an operator) and $4 takeover_after.
_LAPSED = LEASE_LAPSED.replace("$6", "$4")
_STANDING = f"SELECT d.status, {_LAPSED} FROM deliveries AS d WHERE d.id = $1 FOR UPDATE"  # noqa: S608
# Already due: it is not early, its schedule brought it here.
_SEND_NOW = """UPDATE deliveries SET early = CASE WHEN next_attempt_at > $2 THEN 1 ELSE early END,
    next_attempt_at = least(next_attempt_at, $2) WHERE id = $1"""
_FLUSH = f"""UPDATE deliveries SET next_attempt_at = $2, early = 1
    WHERE id IN (SELECT d.id FROM deliveries AS d
        WHERE d.subscription = $1 AND d.status = 'pending' AND d.next_attempt_at > $2
          AND {_LAPSED} LIMIT $5 FOR UPDATE SKIP LOCKED)"""  # noqa: S608 - constant fragments


async def end_streak(conn: Any, subscription: str, now: float) -> bool:
    return rowcount(await conn.execute(pg(shared.END_STREAK), subscription, now)) > 0


async def catch_up(
    conn: Any, subscription: str, now: float, after: tuple[float, str] | None, limit: int
) -> CatchUp:
    state = await conn.fetchrow(pg(shared.CATCH_UP_STATE), subscription)
    if state is None or state[0] is None:
        return CatchUp(0, done=True)
    mark = state[0]
    if state[1] is not None:
        await conn.execute(pg(shared.CLEAR_CATCH_UP), subscription, mark)
        return CatchUp(0, done=True)
    low = after if after is not None else (float("-inf"), "")
    records = await conn.fetch(_CAUGHT_UP, subscription, now, mark, low[0], low[1], limit)
    found = [(float(row[0]), str(row[1])) for row in records]
    if len(found) < limit:
        await conn.execute(pg(shared.CLEAR_CATCH_UP), subscription, mark)
    return CatchUp(len(found), done=len(found) < limit, cursor=max(found, default=after))


async def send_now(conn: Any, delivery_id: str, now: float, stale: float) -> SendNow | None:
    answer = send_now_answer(await conn.fetchrow(_STANDING, delivery_id, now, "", stale))
    if answer is SendNow.DUE:
        await conn.execute(_SEND_NOW, delivery_id, now)
    return answer


async def flush_chunk(conn: Any, subscription: str, now: float, stale: float, limit: int) -> int:
    return rowcount(await conn.execute(_FLUSH, subscription, now, "", stale, limit))
