"""The device directory's SQL for the PostgreSQL store.

The ``devices`` table holds one row per device with its latest event, written
by every ingest (:func:`note_devices`, inside the ingest transaction) whether
presence is tracked or not, until an operator forgets the device. A page of
the directory is one range of its primary key (a prefix is the range
``[prefix, next)``), or of the presence index by state, joined row by row:
a few index probes per device listed, however many are stored. Ids are
compared ``COLLATE "C"`` (the byte order of their UTF-8, as SQLite's BINARY
collation): in that order the ids sharing a prefix are one range, whatever
the database's own collation.

f-strings here only join constant fragments; values are always $n.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from bridge.core.presence import Presence
from bridge.store import devices as common
from bridge.store.rows import Accepted, DeviceDetail, DeviceSummary

__all__ = ["forget_device", "get_device", "list_devices", "note_devices"]

_C = 'COLLATE "C"'
# The directory row's presence: the presence key is in the database's collation.
_PRESENCE_OF_D = (
    'presence AS p ON p.account = d.account AND p.device_id = d.device_id COLLATE "default"'
)

# Rows in (account, device id) order, so two batches lock shared rows in the same order.
_NOTE = f"""INSERT INTO devices ({common.DEVICE_COLUMNS})
    SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::float8[],
      $6::float8[], $7::text[])
    {common.DEVICE_NOTED}"""  # noqa: S608


def _page_query(
    *, state: Presence | None, after: bool, bounded: bool, account: bool = False
) -> str:
    """One page: $1 low, $2 page size, then the optional high, cursor device (its id, and
    its account unless ``account``), account and state."""
    key = f"p.device_id {_C}" if state is not None else "d.device_id"
    owner = "p.account" if state is not None else "d.account"
    numbers = itertools.count(3)  # $1 and $2 are the low bound and the page size
    where = [f"{key} >= $1"]
    if bounded:
        where.append(f"{key} < ${next(numbers)}")
    if after and account:  # one account's device ids are unique
        where.append(f"{key} > ${next(numbers)}")
    elif after:
        where.append(f"({key}, {owner}) > (${next(numbers)}, ${next(numbers)})")
    if account:
        where.append(f"{owner} = ${next(numbers)}")
    if state is not None:
        where.append(f"p.state = ${next(numbers)}")
    if state is not None:
        source = f"""presence AS p JOIN devices AS d
            ON d.account = p.account AND d.device_id = p.device_id {_C}"""
    else:
        source = f"devices AS d LEFT JOIN {_PRESENCE_OF_D}"
    order = key if account else f"{key}, {owner}"
    return f"""SELECT {common.DEVICE_SUMMARY_COLUMNS} FROM {source}
        WHERE {" AND ".join(where)} ORDER BY {order} LIMIT $2"""  # noqa: S608


_SUMMARY = f"""SELECT {common.DEVICE_SUMMARY_COLUMNS}
    FROM devices AS d LEFT JOIN {_PRESENCE_OF_D}
    WHERE d.account = $1 AND d.device_id = $2"""  # noqa: S608
_EVENTS = f"""SELECT {common.DEVICE_EVENT_COLUMNS} FROM events
    WHERE account = $1 AND device_id {_C} = $2 ORDER BY arrival DESC LIMIT $3"""  # noqa: S608
# Every delivery of those events, or (a bound account) only that account's.
_DELIVERIES = f"""SELECT {common.DEVICE_DELIVERY_COLUMNS} FROM deliveries
    WHERE event_id = ANY($1::text[]) AND ($2::text IS NULL OR account = $2::text)
    ORDER BY seq"""  # noqa: S608
_FORGET_DEVICE = "DELETE FROM devices WHERE account = $1 AND device_id = $2"
_FORGET_PRESENCE = "DELETE FROM presence WHERE account = $1 AND device_id = $2"


async def note_devices(conn: Any, stored: Sequence[Accepted]) -> None:
    """Record the devices of newly stored events and their latest event."""
    rows = common.device_rows(stored)
    if rows:
        await conn.execute(_NOTE, *(list(column) for column in zip(*rows, strict=True)))


async def list_devices(conn: Any, page: common.DevicePage) -> list[DeviceSummary]:
    params: list[Any] = [page.low, page.size]
    params += [value for value in (page.high, page.after) if value is not None]
    if page.after is not None and page.account is None:
        params.append(page.after_account)
    if page.account is not None:
        params.append(page.account)
    if page.state is not None:
        params.append(page.state.value)
    query = _page_query(
        state=page.state,
        after=page.after is not None,
        bounded=page.high is not None,
        account=page.account is not None,
    )
    return [common.device_summary_from_row(row) for row in await conn.fetch(query, *params)]


async def get_device(
    conn: Any, device: tuple[str, str], events: int, deliveries_of: str | None
) -> DeviceDetail | None:
    row = await conn.fetchrow(_SUMMARY, *device)
    if row is None:
        return None
    history = await conn.fetch(_EVENTS, *device, max(events, 0))
    ids = [event[0] for event in history]
    deliveries = await conn.fetch(_DELIVERIES, ids, deliveries_of) if history else []
    return common.device_detail(common.device_summary_from_row(row), history, deliveries)


async def forget_device(conn: Any, account: str, device_id: str) -> bool:
    """Drop a device's directory and presence rows; False when neither existed."""
    dropped: str = await conn.execute(_FORGET_DEVICE, account, device_id)
    dropped_presence: str = await conn.execute(_FORGET_PRESENCE, account, device_id)
    return dropped != "DELETE 0" or dropped_presence != "DELETE 0"
