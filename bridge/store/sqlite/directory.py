"""The device directory's SQL for the SQLite store.

The ``devices`` table holds one row per device with its latest event, written
by every ingest (:func:`note_devices`, inside the ingest transaction) whether
presence is tracked or not, until an operator forgets the device. A page of
the directory is one range of its primary key (a prefix is the range
``[prefix, next)``), or of the presence index by state, joined row by row:
a few index probes per device listed, however many are stored. Ids sort by
SQLite's BINARY collation, the byte order of their UTF-8, as in PostgreSQL's
``COLLATE "C"``.

f-strings here only join constant fragments; values are always bound (:name).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from bridge.core.presence import Presence
from bridge.store import devices as common
from bridge.store.rows import Accepted, DeviceDetail, DeviceSummary

__all__ = ["forget_device", "get_device", "list_devices", "note_devices"]

_NOTE = f"""INSERT INTO devices ({common.DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
    {common.DEVICE_NOTED}"""  # noqa: S608


def _page_query(
    *, state: Presence | None, after: bool, bounded: bool, account: bool = False
) -> str:
    """One page: ids from :low (before :high when bounded, after the device :after of
    :after_account), :n of them; with ``account``, only the devices of :account."""
    table = "p" if state is not None else "d"
    key, owner = f"{table}.device_id", f"{table}.account"
    where = [f"{key} >= :low"]
    if bounded:
        where.append(f"{key} < :high")
    if account:
        where.append(f"{owner} = :account")
        if after:  # one account's device ids are unique
            where.append(f"{key} > :after")
    elif after:
        where.append(f"({key}, {owner}) > (:after, :after_account)")
    if state is not None:
        where.append("p.state = :state")
        source = """presence AS p JOIN devices AS d
            ON d.account = p.account AND d.device_id = p.device_id"""
    else:
        source = """devices AS d LEFT JOIN presence AS p
            ON p.account = d.account AND p.device_id = d.device_id"""
    order = key if account else f"{key}, {owner}"
    return f"""SELECT {common.DEVICE_SUMMARY_COLUMNS} FROM {source}
        WHERE {" AND ".join(where)} ORDER BY {order} LIMIT :n"""  # noqa: S608


_SUMMARY = f"""SELECT {common.DEVICE_SUMMARY_COLUMNS}
    FROM devices AS d LEFT JOIN presence AS p
      ON p.account = d.account AND p.device_id = d.device_id
    WHERE d.account = ? AND d.device_id = ?"""  # noqa: S608
_EVENTS = f"""SELECT {common.DEVICE_EVENT_COLUMNS} FROM events
    WHERE account = ? AND device_id = ? ORDER BY arrival DESC LIMIT ?"""  # noqa: S608
# Every delivery of those events, or (a bound account) only that account's.
_DELIVERIES = f"""SELECT {common.DEVICE_DELIVERY_COLUMNS} FROM deliveries
    WHERE event_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR account = ?2)
    ORDER BY rowid"""  # noqa: S608
_FORGET = (
    "DELETE FROM devices WHERE account = ? AND device_id = ?",
    "DELETE FROM presence WHERE account = ? AND device_id = ?",
)


def note_devices(conn: sqlite3.Connection, stored: Sequence[Accepted]) -> None:
    """Record the devices of newly stored events and their latest event."""
    rows = common.device_rows(stored)
    if rows:
        conn.executemany(_NOTE, rows)


def list_devices(conn: sqlite3.Connection, page: common.DevicePage) -> list[DeviceSummary]:
    params: dict[str, Any] = {"low": page.low, "high": page.high, "after": page.after}
    params |= {"n": page.size, "account": page.account, "after_account": page.after_account}
    if page.state is not None:
        params["state"] = page.state.value
    query = _page_query(
        state=page.state,
        after=page.after is not None,
        bounded=page.high is not None,
        account=page.account is not None,
    )
    return [common.device_summary_from_row(row) for row in conn.execute(query, params)]


def get_device(
    conn: sqlite3.Connection, device: tuple[str, str], events: int, deliveries_of: str | None
) -> DeviceDetail | None:
    row = conn.execute(_SUMMARY, device).fetchone()
    if row is None:
        return None
    history = conn.execute(_EVENTS, (*device, max(events, 0))).fetchall()
    ids = orjson.dumps([event[0] for event in history]).decode()
    deliveries = conn.execute(_DELIVERIES, (ids, deliveries_of)).fetchall() if history else []
    return common.device_detail(common.device_summary_from_row(row), history, deliveries)


def forget_device(conn: sqlite3.Connection, account: str, device_id: str) -> bool:
    """Drop a device's directory and presence rows; False when neither existed."""
    dropped = (conn.execute(statement, (account, device_id)).rowcount for statement in _FORGET)
    return sum(dropped) > 0
