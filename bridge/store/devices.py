"""The device directory's rows, pages and cursors, shared by both backends.

A device is keyed by (account, device id): the same id under two accounts is
two devices, each with its own presence and history. ``""`` is the account of
devices whose topics name none. Pure: functions take values (rows already
fetched) and return values; the SQL is in each backend's ``directory`` module.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.presence import Presence
from bridge.errors import StoreError
from bridge.store import pages
from bridge.store.rows import (
    Accepted,
    DeliveryStatus,
    DeviceDelivery,
    DeviceDetail,
    DeviceEvent,
    DeviceSummary,
    EventSummary,
)

__all__ = [
    "DEVICE_COLUMNS",
    "DEVICE_DELIVERY_COLUMNS",
    "DEVICE_EVENT_COLUMNS",
    "DEVICE_NOTED",
    "DEVICE_SUMMARY_COLUMNS",
    "DevicePage",
    "decode_device_cursor",
    "device_detail",
    "device_page",
    "device_page_and_cursor",
    "device_rows",
    "device_summary_from_row",
    "encode_device_cursor",
    "prefix_range",
]

# The columns ``device_summary_from_row`` reads, in its order: a directory row
# (``d``) joined to its presence row (``p``).
DEVICE_SUMMARY_COLUMNS = """d.device_id, p.state, p.changed_at, p.last_seen, p.reason,
    d.last_event_id, d.last_event_type, d.last_event_at, d.last_received_at, d.account"""
# The columns ``device_rows`` gives values for, in its order.
DEVICE_COLUMNS = """device_id, first_seen, last_event_id, last_event_type, last_event_at,
    last_received_at, account"""
# What noting a known device changes: its latest event, which only moves forward (two
# batches may commit out of order). SQLite and PostgreSQL spell the upsert alike.
DEVICE_NOTED = """ON CONFLICT (account, device_id) DO UPDATE SET
      last_event_id = excluded.last_event_id,
      last_event_type = excluded.last_event_type, last_event_at = excluded.last_event_at,
      last_received_at = excluded.last_received_at
    WHERE devices.last_received_at IS NULL
       OR excluded.last_received_at >= devices.last_received_at"""
# An event of a device's history, and the deliveries of those events.
DEVICE_EVENT_COLUMNS = "id, type, occurred_at, received_at"
DEVICE_DELIVERY_COLUMNS = """event_id, id, subscription, status, attempts, created_at,
    next_attempt_at, dead_reason, last_status_code"""
_DEVICE_CURSOR = "device:"
_ACCOUNT_MARK = "\x00"  # never in a topic level, so never in a device id


def device_summary_from_row(row: Sequence[Any]) -> DeviceSummary:
    """A row of ``DEVICE_SUMMARY_COLUMNS`` as a DeviceSummary."""
    last_event = None if row[5] is None else EventSummary(row[5], row[6], row[7], row[8])
    last_seen = row[3]
    if last_seen is None and last_event is not None:
        last_seen = last_event.received_at
    return DeviceSummary(
        device_id=row[0],
        state=None if row[1] is None else Presence(row[1]),
        changed_at=row[2],
        last_seen=last_seen,
        reason=row[4],
        last_event=last_event,
        account=row[9] or None,
    )


def device_rows(items: Iterable[Accepted]) -> list[tuple[Any, ...]]:
    """The directory rows a batch of newly stored events writes, one per device, sorted
    by (account, device id) (the order to lock them in): the device's first receipt in
    the batch and its latest event."""
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], Accepted] = {}
    for item in items:
        device = item.event.device_id
        if device is None:
            continue
        key = (item.event.account or "", device)
        first[key] = min(first.get(key, item.received_at), item.received_at)
        last[key] = item
    return [
        (
            device,
            first[(account, device)],
            last[(account, device)].event.id,
            last[(account, device)].event.type,
            last[(account, device)].event.timestamp.timestamp(),
            last[(account, device)].received_at,
            account,
        )
        for account, device in sorted(last)
    ]


def prefix_range(prefix: str | None) -> tuple[str, str | None]:
    """The ids starting with ``prefix`` as the range ``low <= id < high`` (high None:
    no end) in code point order, the byte order of UTF-8 both stores compare in."""
    text = prefix or ""
    while text:
        last = ord(text[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates are no characters: skip them
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix or "", text[:-1] + chr(last)
        text = text[:-1]
    return prefix or "", None


def device_detail(
    summary: DeviceSummary,
    events: Iterable[Sequence[Any]],
    deliveries: Iterable[Sequence[Any]],
) -> DeviceDetail:
    """A device's detail from its ``DEVICE_EVENT_COLUMNS`` rows (newest first) and the
    ``DEVICE_DELIVERY_COLUMNS`` rows of those events (oldest first)."""
    by_event: dict[str, list[DeviceDelivery]] = {}
    for row in deliveries:
        by_event.setdefault(row[0], []).append(
            DeviceDelivery(
                id=row[1],
                subscription=row[2],
                status=DeliveryStatus(row[3]),
                attempts=row[4],
                created_at=row[5],
                next_attempt_at=row[6] if row[3] == DeliveryStatus.PENDING.value else None,
                dead_reason=row[7],
                last_status_code=row[8],
            )
        )
    history = tuple(
        DeviceEvent(EventSummary(*row[:4]), tuple(by_event.get(row[0], ()))) for row in events
    )
    return DeviceDetail(summary, history)


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One directory page to read: ids in ``[low, high)`` (no end when high is None),
    after the device (``after``, ``after_account``) when given, in ``state`` when given,
    of ``account`` when given (None: every account's devices); ``size`` rows at most."""

    state: Presence | None
    low: str
    high: str | None
    after: str | None
    size: int
    account: str | None = None
    after_account: str = ""


def device_page(
    state: Presence | None,
    prefix: str | None,
    cursor: str | None,
    limit: int,
    account: str | None = None,
) -> DevicePage:
    """The page a directory listing asks for, with one row more than ``limit`` to see
    whether another page follows."""
    if limit < 1:
        raise StoreError("a device list page needs a limit of at least 1")
    after, after_account = decode_device_cursor(cursor) if cursor is not None else (None, "")
    low, high = prefix_range(prefix)
    return DevicePage(state, low, high, after, limit + 1, account, after_account)


def device_page_and_cursor(
    rows: list[DeviceSummary], limit: int
) -> tuple[list[DeviceSummary], str | None]:
    """One page of devices out of up to ``limit + 1``, and the next page's cursor if any."""
    return pages.page_and_cursor(
        rows, limit, lambda device: encode_device_cursor(device.device_id, device.account or "")
    )


def encode_device_cursor(device_id: str, account: str = "") -> str:
    """The opaque cursor of the directory page after the device (``device_id``, ``account``)."""
    text = _DEVICE_CURSOR + device_id + (_ACCOUNT_MARK + account if account else "")
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_device_cursor(cursor: str) -> tuple[str, str]:
    """The device (id, account) a directory cursor continues after."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_DEVICE_CURSOR) or len(text) == len(_DEVICE_CURSOR):
        raise StoreError("invalid device list cursor")
    device_id, _, account = text[len(_DEVICE_CURSOR) :].partition(_ACCOUNT_MARK)
    if not device_id:
        raise StoreError("invalid device list cursor")
    return device_id, account
