"""Another process holding a read transaction on the bridge's SQLite file (a backup,
Litestream, an operator's shell) holds up no commit.

A real ``hookbridge run`` process, a private mosquitto and real receivers; the
reader is a second process with its own connection (tests.support.sqlite_reader).
The test asserts causes, not timings: events published after the reader began
were committed, acknowledged and delivered while the reader still held the very
snapshot it began with; the log grew behind it, passed ``store.log_alert``
(alert and metric), and was cut back once the reader left.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import crm_subscription
from tests.support.admin import Admin, admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver, receiving
from tests.support.sqlite_reader import held_read
from tests.support.waiting import wait_until

WAVES = 60  # each wave published only once the one before was delivered
PER_WAVE = 25
LOG_ALERT = 256 * 1024
SESSIONS = "SELECT count(*) FROM events WHERE type = 'session.started'"


def _payload(seq: int) -> dict[str, Any]:
    return {"type": "session.started", "id": f"r-{seq}", "seq": seq, "session_id": f"s-{seq}"}


def _sessions(receiver: Receiver) -> list[dict[str, Any]]:
    return [e for e in receiver.events() if e["type"] == "session.started"]


def _log_size(path: Path) -> int:
    log = path.with_name(path.name + "-wal")
    return log.stat().st_size if log.exists() else 0


async def _gauge(admin: Admin, name: str) -> float:
    status, scrape = await admin.get("/metrics")
    assert status == 200, scrape
    found = re.search(rf"^{name} (\S+)$", scrape, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(240)
async def test_a_reader_holding_the_database_holds_up_no_commit(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    database = tmp_path / "hookbridge.db"
    async with receiving() as crm, receiving() as ops:
        config = admin_config(
            mosquitto,
            tmp_path,
            [
                crm_subscription(crm, events=["session.*"]),
                {"name": "ops", "url": ops.url, "events": ["bridge.store_log_large"]},
            ],
            store={"log_alert": "256KB"},
        )
        with (
            started_bridge(config, tmp_path) as bridge,
            Publisher(mosquitto.port) as device,
            held_read(database, SESSIONS, tmp_path / "reader.out") as reader,
        ):
            assert reader.first == 0
            for wave in range(WAVES):
                seqs = range(wave * PER_WAVE, (wave + 1) * PER_WAVE)
                for seq in seqs:
                    device.publish(f"devices/dev-{seq % 7}/events", _payload(seq))
                done = (wave + 1) * PER_WAVE
                # A delivery is handed over only once its event is committed (and PUBACKed).
                await wait_until(
                    lambda done=done: len(_sessions(crm)) >= done,
                    timeout=30,
                    message=f"wave {wave} delivered",
                )
            # All of it happened while the reader held the snapshot it began with.
            assert reader.count_again() == (0, True)
            held = _log_size(database)
            assert held > LOG_ALERT  # the log grew behind the reader (about 20 MB)
            async with admin_client(config) as admin:
                await wait_until(
                    lambda: len(ops.events()) >= 1, timeout=30, message="the log alert"
                )
                assert await _gauge(admin, "hookbridge_store_log_bytes") > LOG_ALERT
                assert await _gauge(admin, "hookbridge_store_log_large_total") >= 1
            reader.leave()
            # The reader left: a checkpoint copies the rest and empties the log.
            await wait_until(
                lambda: _log_size(database) < LOG_ALERT,
                timeout=60,
                message="the log cut back",
            )
            assert await bridge.stop() == 0
        sessions = _sessions(crm)
        assert len(sessions) == len(crm.requests) == WAVES * PER_WAVE  # each exactly once
        for event in sessions:
            seq = event["data"]["seq"]
            assert event["data"]["device_id"] == f"dev-{seq % 7}"
            assert event["data"]["session_id"] == f"s-{seq}"
        assert {e["data"]["seq"] for e in sessions} == set(range(WAVES * PER_WAVE))
        alert = ops.events()[0]
        assert alert["type"] == "bridge.store_log_large"
        assert alert["data"]["limit_bytes"] == LOG_ALERT
        assert alert["data"]["log_bytes"] > LOG_ALERT
