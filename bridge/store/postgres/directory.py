"""The device directory's SQL for the PostgreSQL store: which devices exist, one page at a time.

A device is known by its presence row or by any stored event naming it. The
distinct device ids of the events table are walked through the index
``events_device`` (step 6 of the schema) one probe per device, never by
scanning the events: a page costs a few probes per device listed. Ids are
compared ``COLLATE "C"`` (the byte order of their UTF-8, as SQLite's BINARY
collation): in that order the ids sharing a prefix are contiguous, whatever
the database's own collation.

f-strings here only join constant fragments; values are always $n.
"""

from __future__ import annotations

from typing import Any

from bridge.core.presence import Presence
from bridge.errors import StoreError
from bridge.store import common
from bridge.store.base import DeviceDetail, DeviceSummary

__all__ = ["get_device", "list_devices"]

_C = 'COLLATE "C"'

# The presence row and the latest event of each device of ``page``.
_JOINS = f"""LEFT JOIN presence AS p ON p.device_id = page.device_id COLLATE "default"
    LEFT JOIN LATERAL (
        SELECT l.id, l.type, l.occurred_at, l.received_at FROM events AS l
        WHERE l.device_id {_C} = page.device_id ORDER BY l.arrival DESC LIMIT 1) AS e ON true"""  # noqa: S608


def _page_query(*, state: Presence | None, after: bool) -> str:
    """The page's SELECT; $1 prefix, $2 page size, then $3 the cursor's id and/or the state."""
    n = 3

    def bounds(column: str) -> str:
        lower = f"{column} {_C} >= $1"
        return f"{lower} AND {column} {_C} > $3" if after else lower

    has_prefix = "left({column}, length($1)) = $1"
    state_filter = ""
    if state is not None:
        state_filter = f"AND state = ${n + 1 if after else n}"
    presence = f"""SELECT device_id {_C} AS device_id FROM presence
        WHERE {bounds("device_id")} AND {has_prefix.format(column="device_id")} {state_filter}
        ORDER BY device_id {_C} LIMIT $2"""  # noqa: S608
    if state is not None:
        ids = presence
        walk = ""
    else:
        walk = f"""WITH RECURSIVE walk (device_id) AS (
            SELECT (SELECT min(device_id {_C}) FROM events WHERE {bounds("device_id")})
            UNION ALL
            SELECT (SELECT min(x.device_id {_C}) FROM events AS x
                    WHERE x.device_id {_C} > walk.device_id)
            FROM walk
            WHERE walk.device_id IS NOT NULL AND {has_prefix.format(column="walk.device_id")})"""  # noqa: S608
        # The walk is evaluated lazily: LIMIT stops it after the page's ids.
        ids = f"""(SELECT device_id FROM walk
                WHERE device_id IS NOT NULL AND {has_prefix.format(column="device_id")}
                LIMIT $2)
            UNION
            ({presence})"""  # noqa: S608
    return f"""{walk}
        SELECT {common.DEVICE_SUMMARY_COLUMNS}
        FROM (SELECT device_id FROM ({ids}) AS ids ORDER BY device_id LIMIT $2) AS page
        {_JOINS}
        ORDER BY page.device_id"""  # noqa: S608


_SUMMARY = f"""SELECT {common.DEVICE_SUMMARY_COLUMNS}
    FROM (SELECT $1::text {_C} AS device_id) AS page {_JOINS}"""  # noqa: S608
_EVENTS = f"""SELECT {common.DEVICE_EVENT_COLUMNS} FROM events
    WHERE device_id {_C} = $1 ORDER BY arrival DESC LIMIT $2"""  # noqa: S608
_DELIVERIES = f"""SELECT {common.DEVICE_DELIVERY_COLUMNS} FROM deliveries
    WHERE event_id = ANY($1::text[]) ORDER BY seq"""  # noqa: S608


async def list_devices(
    conn: Any,
    *,
    state: Presence | None,
    prefix: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[DeviceSummary], str | None]:
    if limit < 1:
        raise StoreError("a device list page needs a limit of at least 1")
    after = common.decode_device_cursor(cursor) if cursor is not None else None
    params: list[Any] = [prefix or "", limit + 1]
    if after is not None:
        params.append(after)
    if state is not None:
        params.append(state.value)
    rows = await conn.fetch(_page_query(state=state, after=after is not None), *params)
    return common.device_page_and_cursor([common.device_summary_from_row(r) for r in rows], limit)


async def get_device(conn: Any, device_id: str, *, events: int) -> DeviceDetail | None:
    summary = common.device_summary_from_row(await conn.fetchrow(_SUMMARY, device_id))
    if summary.state is None and summary.last_event is None:
        return None
    history = await conn.fetch(_EVENTS, device_id, max(events, 0))
    deliveries = await conn.fetch(_DELIVERIES, [row[0] for row in history]) if history else []
    return common.device_detail(summary, history, deliveries)
