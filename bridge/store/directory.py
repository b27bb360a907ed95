"""The device directory's methods of the store: presence rows, the directory's pages,
one device with its history, and forgetting a device.

A device is keyed by (account, device id) (see :mod:`bridge.store.devices`); ``""``
is the account of devices whose topics name none. Each method is one transaction,
run by the backend's operations of the same name (in its ``directory`` and
``device`` modules).
"""

from __future__ import annotations

from typing import Any

from bridge.core.presence import Presence, PresenceState
from bridge.store import devices
from bridge.store.rows import DeviceDetail, DeviceSummary

__all__ = ["DIRECTORY_OPERATIONS", "DirectoryStore"]

DIRECTORY_OPERATIONS = frozenset(["forget_device", "get_device", "get_presence", "list_devices"])
"""The directory's operations: each ``name(conn, …)`` in one of a backend's modules."""


class DirectoryStore:
    """The store's directory methods; a base of :class:`bridge.store.base.Store`."""

    async def _write(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _read(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def get_presence(self, device_id: str, account: str = "") -> PresenceState | None:
        """The stored presence row of a device, or None for a device never seen."""
        state: PresenceState | None = await self._read("get_presence", account, device_id)
        return state

    async def list_devices(
        self,
        *,
        state: Presence | None,
        prefix: str | None,
        cursor: str | None,
        limit: int,
        account: str | None = None,
    ) -> tuple[list[DeviceSummary], str | None]:
        """The device directory, ordered by device id (byte order of its UTF-8), then
        account, one page at a time; ``account``: only that account's devices ("" the
        devices of no account).

        Every ingest notes the devices its new events name, with their latest
        event, whether presence is tracked or not; a device stays listed until
        :meth:`forget_device`. ``state`` keeps the devices whose presence row is
        in that state; ``prefix`` those whose id starts with it. Returns one page
        and an opaque cursor for the next page, or None after the last page.
        Each page costs a few index probes per device listed, however many
        devices and events are stored.
        """
        rows: list[DeviceSummary] = await self._read(
            "list_devices", devices.device_page(state, prefix, cursor, limit, account)
        )
        return devices.device_page_and_cursor(rows, limit)

    async def get_device(
        self, device_id: str, *, events: int, account: str = "", deliveries_of: str | None = None
    ) -> DeviceDetail | None:
        """One device of ``account`` with its ``events`` most recent events (newest
        first), each with its deliveries (``deliveries_of``: only those of that
        account's subscriptions); None for a device the store does not know."""
        found: DeviceDetail | None = await self._read(
            "get_device", (account, device_id), events, deliveries_of
        )
        return found

    async def forget_device(self, device_id: str, account: str = "") -> bool:
        """Drop a device from the directory, with its presence row; False if unknown.

        Its events stay until retention removes them; a message from the device
        later brings it back, as a device never seen.
        """
        forgotten: bool = await self._write("forget_device", account, device_id)
        return forgotten
