"""What both backends share about leases, heartbeats and the redelivery window.

Pure decisions (which batch moves the dedupe watermark, how far back a DUP
message is compared) and the one loop that keeps an instance's heartbeat row
fresh. See :mod:`bridge.store.base` for what a lease and a fencing token are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.rows import Accepted, Rejection

__all__ = [
    "DEDUPE_FLOOR",
    "HEARTBEAT_INTERVAL",
    "TAKEOVER_AFTER",
    "dedupe_since",
    "keep_heartbeat",
    "next_watermark",
]

log = get_logger("hookbridge.store")

# Defaults: an instance renews its row every 5 s; a row 30 s old is a dead holder.
HEARTBEAT_INTERVAL = 5.0
TAKEOVER_AFTER = 30.0
# A DUP message is compared with at least the last 10 minutes of stored events.
DEDUPE_FLOOR = 600.0


def dedupe_since(watermark: float | None, now: float) -> float:
    """The oldest ``received_at`` a DUP message's content hash is compared with.

    The broker sets DUP only on a message it sent before and saw no PUBACK for;
    our PUBACK goes out right after the commit, so a stored copy of such a
    message was received no earlier than the client's watermark (the oldest
    message of its last batch committed without redeliveries). Nothing older
    can be its copy: a message identical to last week's is new.
    """
    floor = now - DEDUPE_FLOOR
    return floor if watermark is None else min(watermark, floor)


def next_watermark(accepted: Sequence[Accepted], rejected: Sequence[Rejection]) -> float | None:
    """The client's watermark after committing this batch, or None to keep the old one.

    A batch carrying redeliveries leaves it alone: after a restart the broker
    may resend over several batches, and all of them must look back as far.
    """
    if any(item.redelivery for item in accepted):
        return None
    times = [item.received_at for item in accepted] + [r.received_at for r in rejected]
    return min(times) if times else None


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
