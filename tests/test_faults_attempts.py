"""An attempt always ends as a recorded result; a lane never spins.

Both run ``hookbridge run`` as a real process against a private mosquitto and
real receivers: a format plugin that raises and an OAuth2 token server that
answers a token holding a newline break their own subscription's attempts and
nothing else; a receiver that answers in 300 ms drains a backlog larger than
the lane's buffer at its own pace, while the bridge stays nearly idle.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import SECRET
from tests.support.admin import Admin, admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_until


def _events(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"devices/dev-{i % 7}/events", {"type": "session.started", "id": f"a-{i}", "seq": i})
        for i in range(count)
    ]


def _seqs(receiver: Receiver, path: str = "/hook") -> Counter[int]:
    return Counter(
        int(r.json()["data"]["seq"])
        for r in receiver.requests
        if r.path == path and r.body and r.json()["type"] == "session.started"
    )


def _token_with_a_newline(request: Received, _n: int) -> Answer:
    if request.path == "/token":
        body = json.dumps({"access_token": "abc\r\nX-Injected: 1", "expires_in": 3600})
        return Answer(body=body.encode(), headers={"Content-Type": "application/json"})
    return Answer()


async def _reason(admin: Admin, name: str, total: int) -> str:
    """Once every delivery of ``name`` has been tried: the one error they all recorded."""
    tried: list[dict[str, Any]] = []

    async def all_tried() -> bool:
        status, body = await admin.get(
            "/api/deliveries", params={"subscription": name, "limit": "500"}
        )
        assert status == 200, body
        tried[:] = [d for d in body["deliveries"] if d["attempts"] >= 1]
        return len(tried) >= total

    await wait_until(all_tried, timeout=60, message=f"every {name} delivery tried")
    assert all(d["status"] in {"pending", "dead"} for d in tried)
    errors = {d["last_error"] for d in tried}
    assert len(errors) == 1, errors
    return str(errors.pop())


@pytest.mark.timeout(300)
async def test_attempts_that_break_are_recorded_failures_and_touch_no_other_subscription(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    healthy = Receiver()
    other = Receiver(_token_with_a_newline)
    await healthy.start()
    await other.start()
    total = 300
    config = admin_config(
        mosquitto,
        tmp_path,
        [
            {"name": "healthy", "url": healthy.url, "secret": SECRET},
            {
                "name": "plugin",
                "url": other.url.replace("/hook", "/plugin"),
                "format": "example_broken",
                "circuit": {"enabled": False},  # every delivery gets its own attempt
            },
            {
                "name": "token",
                "url": other.url.replace("/hook", "/token-guarded"),
                "auth": {
                    "type": "oauth2_client_credentials",
                    "token_url": other.url.replace("/hook", "/token"),
                    "client_id": "hb",
                    "client_secret": "cs-secret-000",
                },
                "circuit": {"enabled": False},
            },
        ],
        retry={"schedule": ["1s", "1s", "1s", "1s", "1s", "1s"], "jitter": 0.0},
    )
    bridge = BridgeProcess(config, tmp_path)
    try:
        bridge.start()
        bridge.wait_subscribed()
        with Publisher(mosquitto.port) as device:
            device.publish_all(_events(total))
        await wait_until(
            lambda: len(_seqs(healthy)) >= total or not bridge.alive(),
            timeout=120,
            message="the healthy subscription got every event",
        )
        assert bridge.alive(), bridge.log()[-3000:]
        assert set(_seqs(healthy)) == set(range(total))
        async with admin_client(config) as admin:
            reasons = {name: await _reason(admin, name, total) for name in ("plugin", "token")}
        assert "access_token with a space or control character" in reasons["token"]
        assert reasons["plugin"].startswith("error while building the request: RuntimeError")
        # Nothing reached the broken subscriptions' receivers: no split request either.
        assert not [r for r in other.requests if r.path != "/token"]
        assert bridge.alive()
        assert await bridge.stop() == 0
    finally:
        bridge.ensure_stopped()
        await healthy.stop()
        await other.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_draining_a_backlog_at_a_slow_receivers_pace_keeps_the_cpu_idle(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Four in flight at a 300 ms receiver: about 13 deliveries a second, so
    # 1,500 events are a backlog several times the lane's buffer (272).
    slow = True

    def pace(_request: Received, _n: int) -> Answer:
        return Answer(delay=0.3 if slow else 0.0)

    receiver = Receiver(pace)
    await receiver.start()
    total = 1500
    config = admin_config(
        mosquitto, tmp_path, [{"name": "slow", "url": receiver.url, "max_in_flight": 4}]
    )
    bridge = BridgeProcess(config, tmp_path)
    try:
        bridge.start()
        bridge.wait_subscribed()
        assert bridge.process is not None
        proc = psutil.Process(bridge.process.pid)
        with Publisher(mosquitto.port) as device:
            device.publish_all(_events(total))
        # Ingest is done once the queue holds every event; then only the drain runs.
        async with admin_client(config) as admin:

            async def stored() -> bool:
                status, body = await admin.get("/api/stats")
                return status == 200 and int(body["counts"]["events"]) >= total

            await wait_until(stored, timeout=60, message="every event stored")
        cpu_before = sum(proc.cpu_times()[:2])
        delivered_before = len(_seqs(receiver))
        started = time.monotonic()
        await wait_until(lambda: time.monotonic() - started >= 8.0, timeout=20, interval=0.2)
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        wall = time.monotonic() - started
        drained = len(_seqs(receiver)) - delivered_before
        assert drained > 0, "the backlog did not move"
        assert drained < total, "the backlog drained too fast to measure a slow receiver"
        assert cpu < 0.10 * wall, f"{cpu:.2f} CPU s in {wall:.1f} s draining {drained}"
        slow = False  # the receiver recovers: everything arrives, once
        await wait_until(
            lambda: len(_seqs(receiver)) >= total, timeout=120, message="all delivered"
        )
        assert set(_seqs(receiver)) == set(range(total))
        assert await bridge.stop() == 0
    finally:
        bridge.ensure_stopped()
        await receiver.stop()
