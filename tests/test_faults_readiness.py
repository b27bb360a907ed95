"""Readiness of a running ``hookbridge run`` while its store really cannot take commits.

The store lives on a small tmpfs of its own: filling it is a real full disk
(ENOSPC from the kernel), not a simulated error. ``/readyz`` is asked over
HTTP, as an orchestrator asks it.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bridge.store.postgres.store import parse_postgres_url
from tests.conftest import crm_subscription
from tests.support.admin import Admin, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresDatabase
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``; skips where mounting is not allowed."""
    path.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write until the kernel answers ENOSPC; returns the file to delete to free it again."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        for _ in range(100_000):  # bounded: far more than any test disk holds
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def _events(count: int) -> list[tuple[str, dict[str, Any]]]:
    pad = "x" * 2000  # each event needs fresh pages
    return [
        (f"devices/dev-{i % 5}/events", {"type": "session.started", "id": f"f-{i}", "pad": pad})
        for i in range(count)
    ]


async def _readyz(admin: Admin) -> tuple[int, dict[str, Any]]:
    status, body = await admin.get("/readyz", token="")
    assert isinstance(body, dict), body
    return status, body


async def test_readyz_is_503_over_http_while_a_full_disk_stops_commits(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        config = admin_config(
            mosquitto,
            tmp_path,
            [crm_subscription(receiver)],
            store={"url": f"sqlite:///{disk}/hookbridge.db"},
        )
        admin = Admin(f"http://{config['api']['listen']}")
        try:
            with started_bridge(config, tmp_path) as bridge:
                await wait_until(
                    lambda: _status_is(admin, 200), timeout=15, message="ready at start"
                )
                filler = fill(disk)
                total = 300
                with Publisher(mosquitto.port) as device:
                    device.publish_all(_events(total))
                await wait_until(
                    lambda: _blocked(admin), timeout=30, message="ingest blocked on a full disk"
                )
                status, body = await _readyz(admin)
                assert status == 503 and body["ready"] is False
                assert body["broker_connected"] is True
                assert (body["store_writable"], body["store_blocked"]) == (False, True)
                blocked = [r for r in body["reasons"] if r.startswith("store_blocked:")]
                assert blocked and "full" in blocked[0].lower(), body
                assert "store refuses writes" in bridge.log()
                filler.unlink()
                await wait_until(
                    lambda: len(receiver.unique_ids()) >= total,
                    timeout=60,
                    message="every event delivered once the disk has room",
                )
                await wait_until(lambda: _status_is(admin, 200), timeout=15, message="ready again")
                _, body = await _readyz(admin)
                assert body["reasons"] == []
        finally:
            await admin.close()


async def _status_is(admin: Admin, expected: int) -> bool:
    status, _ = await admin.get("/readyz", token="")
    return status == expected


async def _blocked(admin: Admin) -> bool:
    _, body = await _readyz(admin)
    return bool(body["store_blocked"])


async def test_readyz_is_503_over_http_while_an_operator_lock_stops_commits(
    mosquitto: Mosquitto, postgres: PostgresDatabase, receiver: Receiver, tmp_path: Path
) -> None:
    url = postgres.schema_url("ready")
    config = admin_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        store={"url": url},
    )
    admin = Admin(f"http://{config['api']['listen']}")
    dsn, schema, _ = parse_postgres_url(url)
    operator = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        with started_bridge(config, tmp_path):
            await wait_until(lambda: _status_is(admin, 200), timeout=15, message="ready at start")
            # Reads go on (EXCLUSIVE allows them); every insert into events waits.
            transaction = operator.transaction()
            await transaction.start()
            await operator.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            try:
                await wait_until(
                    lambda: _status_is(admin, 503), timeout=20, message="not ready under the lock"
                )
                _, body = await _readyz(admin)
                assert body["broker_connected"] is True
                assert [r.split(":")[0] for r in body["reasons"]] == ["store_not_writable"], body
            finally:
                await transaction.rollback()
            await wait_until(lambda: _status_is(admin, 200), timeout=20, message="ready again")
    finally:
        await operator.close()
        await admin.close()
