"""What both backends share about leases and heartbeats.

The one loop that keeps an instance's heartbeat row fresh. See
:mod:`bridge.store.base` for what a lease and a fencing token are.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from bridge.errors import StoreError
from bridge.observe.logs import get_logger

__all__ = [
    "HEARTBEAT_INTERVAL",
    "TAKEOVER_AFTER",
    "keep_heartbeat",
]

log = get_logger("hookbridge.store")

# Defaults: an instance renews its row every 5 s; a row 30 s old is a dead holder.
HEARTBEAT_INTERVAL = 5.0
TAKEOVER_AFTER = 30.0


class _Beating(Protocol):
    async def heartbeat(self) -> None: ...


async def keep_heartbeat(store: _Beating, *, interval: float, stopping: asyncio.Event) -> None:
    """Renew the instance's heartbeat row every ``interval`` seconds until ``stopping``.

    A failed renewal is logged and tried again at the next beat: while the row
    is fresh elsewhere nothing is lost, and once it is stale the others take
    the work over and the fencing tokens keep our late results out.
    """
    failing = False
    while not stopping.is_set():
        try:
            await store.heartbeat()
        except StoreError as exc:
            if not failing:
                log.warning("cannot renew the heartbeat; will retry", error=str(exc))
            failing = True
        else:
            if failing:
                log.info("heartbeat renewed again")
            failing = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
