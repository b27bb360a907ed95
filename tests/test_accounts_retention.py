"""What the store keeps of accounts over time: attempts recorded with their account, and
the retention sweep purging the audit trail after ``retention.audit`` and freeing the
names of deleted API subscriptions once their deliveries are past retention."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from bridge.config import parse_config
from bridge.core.events import Event
from bridge.delivery.retention import Retention
from bridge.store.accounts import AuditNote, Created, StoredSubscription
from bridge.store.rows import Accepted, AttemptOutcome, AttemptRecord, DeliveryStatus
from bridge.store.sqlite.store import SQLiteStore
from tests.store_contract import opened

T0 = 1_800_000_000.0
DAY = 86400.0


def _note(at: float, target: str) -> AuditNote:
    return AuditNote(at, "operator", None, "acme", "subscription.deleted", target)


async def test_attempts_keep_their_account_and_retention_purges_the_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with opened(SQLiteStore(path)) as store:
        event = Event(
            "evt_retained",
            "session.started",
            datetime.fromtimestamp(T0, UTC),
            "mqtt://b/tenants/acme/devices/d/events",
            {"device_id": "d"},
            account="acme",
        )
        result = await store.ingest(
            [Accepted(event, ("acme-hook",), T0)],
            [],
            now=T0,
            owner="a",
            lease_until=T0,
            owners={"acme-hook": "acme"},
        )
        (delivery,) = result.deliveries
        # A retry's success: it has an attempt row (a first success lives on its delivery).
        record = AttemptRecord(delivery.id, 2, T0, 5.0, 200, None, "ok")
        await store.record_attempts([(record, AttemptOutcome(DeliveryStatus.DELIVERED))], now=T0)
        assert _attempt_accounts(path) == ["acme"]  # the account of its delivery

        await store.create_account("acme", now=T0, audit=_note(T0, "acme"))
        row = StoredSubscription("old", "acme", 1, {"name": "old"}, None, T0, T0)
        await store.create_subscription(row, reserved=[], limit=None, audit=_note(T0, "old"))
        await store.delete_subscription("old", now=T0, audit=_note(T0 + DAY, "old"))

        settings = parse_config({"retention": {"audit": "2d", "delivered": "1d", "dead": "3d"}})
        clock = [T0 + 2 * DAY + 1]
        sweeper = Retention(settings.retention, store, clock=lambda: clock[0])
        await sweeper.sweep()
        entries, _ = await store.list_audit(account=None, cursor=None, limit=10)
        assert [e.note.at for e in entries] == [T0 + DAY]  # the two older than 2 days went
        # Freed only once no delivery of it can be kept (dead ones are kept 3 days).
        again = StoredSubscription("old", "acme", 1, {"name": "old"}, None, T0, T0)
        assert (
            await store.create_subscription(again, reserved=[], limit=None, audit=_note(T0, "x"))
            is Created.TAKEN
        )
        clock[0] = T0 + 3 * DAY + 1
        await sweeper.sweep()
        assert (
            await store.create_subscription(again, reserved=[], limit=None, audit=_note(T0, "x"))
            is Created.CREATED
        )
    assert _attempt_accounts(path) == []  # purged with its delivery after a day


def _attempt_accounts(path: Path) -> list[str]:
    """The account column of every attempt row, read beside the store."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT account FROM attempts")]
    finally:
        conn.close()
