"""Watching the size of the store's write-ahead log.

Checkpoints never wait for readers (see :mod:`bridge.store.sqlite.checkpoint`),
so a reader that stays (a backup, Litestream, an operator's shell left open
in a transaction) keeps them from reaching the log's end, and the log grows
for as long as it reads; with ``store.checkpoints: external`` a stopped
Litestream lets it grow for good. :func:`watch_log` measures it every few
seconds and says so once when it passes ``store.log_alert``, and again only
after it fell back below.

It runs as a task on the event loop and reads the file's size, rather than
being told by the checkpoint thread: that way the ``external`` mode, which
has no such thread, is watched too, and nothing crosses from a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.observe.logs import get_logger

__all__ = ["LOG_WATCH_INTERVAL", "LogAlarm", "watch_log"]

log = get_logger("hookbridge.store")

LOG_WATCH_INTERVAL = 2.0


@dataclass(slots=True)
class LogAlarm:
    """Whether the log is past ``limit`` bytes; :meth:`crossed` is True once per crossing."""

    limit: int
    over: bool = False

    def crossed(self, size: int) -> bool:
        """True when ``size`` is past the limit and the size before it was not."""
        was, self.over = self.over, size > self.limit
        return self.over and not was


class _Logging(Protocol):
    async def log_bytes(self) -> int | None: ...


async def watch_log(
    store: _Logging,
    *,
    limit: int,
    stopping: asyncio.Event,
    on_size: Callable[[int], None],
    on_large: Callable[[int], Awaitable[None]],
    interval: float = LOG_WATCH_INTERVAL,
) -> None:
    """Measure the log every ``interval`` seconds until ``stopping``: every size goes
    to ``on_size`` (a gauge), a crossing of ``limit`` to ``on_large`` (an alert).

    Returns at once for a store that keeps no log of its own (PostgreSQL).
    """
    alarm = LogAlarm(limit)
    while not stopping.is_set():
        try:
            size = await store.log_bytes()
        except OSError as exc:  # measured again next time; the store itself goes on
            log.warning("cannot measure the store's write-ahead log", error=str(exc))
        else:
            if size is None:
                return
            on_size(size)
            if alarm.crossed(size):
                log.warning(
                    "the store's write-ahead log passed store.log_alert: a reader may be "
                    "holding a transaction open, or checkpoints are not running",
                    log_bytes=size,
                    limit_bytes=limit,
                )
                try:
                    await on_large(size)
                except Exception:  # an alert must never stop the watch
                    log.exception("alert failed", kind="store_log_large")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
