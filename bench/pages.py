"""``python -m bench.pages``: what the SQLite store writes per event, counted, not timed.

The hot path's cost on disk is the pages each commit appends to the write-ahead
log: every page a transaction changed is written again in full, whatever share
of it changed. This script drives the real store the way a steady stream does
(one event per ingest commit, its attempt's result in the next commit, presence
tracked, one subscription) with checkpoints left to nobody, so the log only
grows, and reports the log's growth per event in pages: once with each
result committed alone, once with it riding in the next ingest commit (what
the recorder's lazy writes do at a steady rate). The figure depends on
the schema and the statements, not on the machine or its load: it is how index
and write-path changes are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bridge.config import Settings
from bridge.core.events import Event
from bridge.core.outcomes import AttemptOutcome, DeliveryStatus
from bridge.core.route import Router
from bridge.ingest.presence import PresenceTracker
from bridge.store import packets
from bridge.store.rows import Accepted, AttemptRecord, IngestResult, Packet
from bridge.store.sqlite.store import SQLiteStore

PAGE = 4096
FRAME = PAGE + 24  # a WAL frame: the page and its header


def _event(n: int, devices: int) -> Event:
    device = f"dev-{n % devices}"
    return Event(
        id=f"evt_pages{n:08d}",
        type="session.started",
        timestamp=datetime.fromtimestamp(1_800_000_000 + n / 1000, UTC),
        source=f"mqtt://bench/devices/{device}/events",
        data={"device_id": device, "session_id": f"s-{n}", "seq": n},
    )


async def measure(events: int, devices: int, workdir: Path, *, riding: bool) -> float:
    """Pages the log grows by per event (see the module docstring)."""
    store = SQLiteStore(workdir / f"pages-{riding}.db", owner="bench", checkpoints="external")
    await store.open()
    wal = workdir / f"pages-{riding}.db-wal"
    settings = Settings.model_validate(
        {"subscriptions": [{"name": "receiver", "url": "http://127.0.0.1:9/hook"}]}
    )

    async def nowhere(_result: IngestResult) -> None:
        return None

    presence = PresenceTracker(
        settings.presence,
        store,
        Router(settings.subscriptions),
        source="mqtt://bench",
        owner="bench",
        lease=60,
        hand_over=nowhere,
    )
    try:
        start = wal.stat().st_size if wal.exists() else 0
        now = 1_800_000_000.0
        previous: list[tuple[AttemptRecord, AttemptOutcome]] = []
        for n in range(events):
            now += 0.001
            event = _event(n, devices)
            observation = presence.observe(event, at=now, retained=False)
            packet = Packet(n % 65535 + 1, "bench", packets.digest(event.source, b"%d" % n))
            item = Accepted(event, ("receiver",), now, packet=packet, presence=observation)
            ingest = store.ingest(
                [item], [], now=now, owner="bench", lease_until=now + 60,
                presence=presence.policy, packet_window=1000,
            )  # fmt: skip
            if riding and previous:
                recorded = store.record_attempts(previous, now=now, lazy=True)
                _, result = await asyncio.gather(recorded, ingest)
            else:
                result = await ingest
            (delivery,) = result.deliveries
            record = AttemptRecord(delivery.id, 1, now, 1.0, 200, None, "ok", delivery.lease_token)
            previous = [(record, AttemptOutcome(DeliveryStatus.DELIVERED))]
            if not riding:
                await store.record_attempts(previous, now=now + 0.001)
        grown = wal.stat().st_size - start
    finally:
        await store.close()
    return round(grown / FRAME / events, 2)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hookbridge-pages-") as tmp:
        result = {
            "events": args.events,
            "pages_per_event_alone": asyncio.run(
                measure(args.events, args.devices, Path(tmp), riding=False)
            ),
            "pages_per_event_riding": asyncio.run(
                measure(args.events, args.devices, Path(tmp), riding=True)
            ),
        }
    print(result, flush=True)
    return result


if __name__ == "__main__":
    main()
