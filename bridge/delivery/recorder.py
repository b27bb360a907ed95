"""The recorder: attempt results written back to the store in batches.

Attempts finish one by one; writing each result in its own transaction would
make the store the bottleneck. The recorder writes what has finished (at most
:data:`RECORD_BATCH`) as one lazy write: it rides in the next commit the store
makes anyway (an ingest batch, at a steady rate a few milliseconds away) in a
savepoint of its own, or is committed alone within 10 ms. What finishes while
one write waits goes in the next. Then it tells the dispatcher which
deliveries are settled. A batch the store refuses is retried with backoff; one
given up on is sent again when its lease runs out, so at-least-once holds
either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.store.base import Store
from bridge.store.rows import AttemptOutcome, AttemptRecord

__all__ = ["RECORD_BATCH", "Recorder"]

log = get_logger("hookbridge.dispatch")

RECORD_BATCH = 512
"""At most this many results per commit: what a kill can lose unrecorded stays bounded."""
_ERROR_PAUSE = 1.0

Settled = Callable[[set[str]], None]


class Recorder:
    """``add()`` results; ``run()`` writes them until ``finish()`` and nothing is left."""

    def __init__(
        self,
        store: Store,
        *,
        settled: Settled,
        clock: Callable[[], float] = time.time,
        replies_committed: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._settled = settled
        # Pipe replies ride on their records into the outbox: its publisher looks once they are in.
        self._replies_committed = replies_committed
        self._clock = clock
        self._records: list[tuple[AttemptRecord, AttemptOutcome]] = []
        self._wake = asyncio.Event()
        self._finishing = False

    def add(self, record: AttemptRecord, outcome: AttemptOutcome) -> None:
        self._records.append((record, outcome))
        self._wake.set()

    def finish(self) -> None:
        """Write what is left without waiting for more, then let ``run()`` return."""
        self._finishing = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                if await self._round():
                    return
            except Exception:
                # Results not written are retried with their deliveries: never stop recording.
                log.exception("recording attempt results failed; going on")
                await asyncio.sleep(_ERROR_PAUSE)

    async def _round(self) -> bool:
        """Write one batch of results; True once finishing with nothing left."""
        await self._wake.wait()
        self._wake.clear()
        # At most one batch per commit; the rest goes in the next round at once.
        batch = self._records[:RECORD_BATCH]
        del self._records[:RECORD_BATCH]
        if self._records:
            self._wake.set()
        if batch:
            await self._write(batch)
            self._settled({record.delivery_id for record, _ in batch})
            if self._replies_committed is not None and any(r.reply for r, _ in batch):
                self._replies_committed()
        return self._finishing and not self._records

    async def _write(self, batch: list[tuple[AttemptRecord, AttemptOutcome]]) -> None:
        delay = 0.1
        for _ in range(100):
            try:
                # Lazy: results need no commit of their own (see the module docstring);
                # when finishing, nothing else may come to carry them.
                await self._store.record_attempts(
                    batch, now=self._clock(), lazy=not self._finishing
                )
            except StoreError as exc:
                log.error("cannot record attempts; will retry", error=str(exc), count=len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                return
        # The leases run out and the deliveries are tried again: at-least-once holds.
        log.error(
            "gave up recording attempts; their deliveries will be sent again", count=len(batch)
        )
