"""The device directory's SQL for the SQLite store: which devices exist, one page at a time.

A device is known by its presence row or by any stored event naming it. The
distinct device ids of the events table are walked through the index
``events_device`` (step 6 of the schema) one probe per device, never by
scanning the events: a page costs a few probes per device listed. Ids sort by
SQLite's BINARY collation, the byte order of their UTF-8, as in PostgreSQL's
``COLLATE "C"``.

Runs on a reader connection; f-strings here only join constant fragments,
values are always bound (:name).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from bridge.core.presence import Presence
from bridge.errors import StoreError
from bridge.store import common
from bridge.store.base import DeviceDetail, DeviceSummary

__all__ = ["get_device", "list_devices"]

# The ids a page may start at: after the cursor, and from the prefix on. The
# walk and the presence scan stop as soon as an id no longer has the prefix.
_HAS_PREFIX = "substr({column}, 1, :plen) = :prefix"


def _page_query(*, state: Presence | None, after: str | None) -> str:
    lower = ["{column} >= :prefix"]
    if after is not None:
        lower.append("{column} > :after")

    def bounds(column: str) -> str:
        return " AND ".join(part.format(column=column) for part in lower)

    presence = f"""SELECT device_id FROM presence
        WHERE {bounds("device_id")} AND {_HAS_PREFIX.format(column="device_id")}
          {"AND state = :state" if state is not None else ""}
        ORDER BY device_id LIMIT :n"""  # noqa: S608
    if state is not None:
        ids = presence
        walk = ""
    else:
        walk = f"""WITH RECURSIVE walk (device_id) AS (
            SELECT (SELECT min(device_id) FROM events WHERE {bounds("device_id")})
            UNION ALL
            SELECT (SELECT min(x.device_id) FROM events AS x WHERE x.device_id > walk.device_id)
            FROM walk
            WHERE walk.device_id IS NOT NULL
              AND {_HAS_PREFIX.format(column="walk.device_id")}
            LIMIT :walk)"""  # noqa: S608
        ids = f"""SELECT device_id FROM walk
            WHERE device_id IS NOT NULL AND {_HAS_PREFIX.format(column="device_id")}
            UNION
            SELECT device_id FROM ({presence})"""  # noqa: S608
    return f"""{walk}
        SELECT {common.DEVICE_SUMMARY_COLUMNS}
        FROM (SELECT device_id FROM ({ids}) ORDER BY device_id LIMIT :n) AS page
        LEFT JOIN presence AS p ON p.device_id = page.device_id
        LEFT JOIN events AS e ON e.arrival = (
            SELECT max(l.arrival) FROM events AS l WHERE l.device_id = page.device_id)
        ORDER BY page.device_id"""  # noqa: S608


_SUMMARY = f"""SELECT {common.DEVICE_SUMMARY_COLUMNS}
    FROM (SELECT :device AS device_id) AS page
    LEFT JOIN presence AS p ON p.device_id = page.device_id
    LEFT JOIN events AS e ON e.arrival = (
        SELECT max(l.arrival) FROM events AS l WHERE l.device_id = page.device_id)"""  # noqa: S608
_EVENTS = f"""SELECT {common.DEVICE_EVENT_COLUMNS} FROM events
    WHERE device_id = ? ORDER BY arrival DESC LIMIT ?"""  # noqa: S608
_DELIVERIES = f"""SELECT {common.DEVICE_DELIVERY_COLUMNS} FROM deliveries
    WHERE event_id IN (SELECT value FROM json_each(?)) ORDER BY rowid"""  # noqa: S608


def list_devices(
    conn: sqlite3.Connection,
    *,
    state: Presence | None,
    prefix: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[DeviceSummary], str | None]:
    if limit < 1:
        raise StoreError("a device list page needs a limit of at least 1")
    after = common.decode_device_cursor(cursor) if cursor is not None else None
    params: dict[str, Any] = {
        "prefix": prefix or "",
        "plen": len(prefix or ""),
        "n": limit + 1,
        # The first row, the page's ids, and the row that ends the walk.
        "walk": limit + 2,
    }
    if after is not None:
        params["after"] = after
    if state is not None:
        params["state"] = state.value
    rows = conn.execute(_page_query(state=state, after=after), params).fetchall()
    return common.device_page_and_cursor([common.device_summary_from_row(r) for r in rows], limit)


def get_device(conn: sqlite3.Connection, device_id: str, *, events: int) -> DeviceDetail | None:
    summary = common.device_summary_from_row(
        conn.execute(_SUMMARY, {"device": device_id}).fetchone()
    )
    if summary.state is None and summary.last_event is None:
        return None
    history = conn.execute(_EVENTS, (device_id, max(events, 0))).fetchall()
    ids = orjson.dumps([row[0] for row in history]).decode()
    deliveries = conn.execute(_DELIVERIES, (ids,)).fetchall() if history else []
    return common.device_detail(summary, history, deliveries)
