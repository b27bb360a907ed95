"""Hostile receivers cost their own attempts and nothing more.

One ``hookbridge run`` process, a private mosquitto, and a hand-written raw
server per misbehaviour (:mod:`tests.support.hostile`), each the target of its
own subscription (its own event type): header lines without end, heavy
header lines, a 1 MB header line, a 1 MB status line, a trickled header
block, a chunked body without end, a ``Content-Length`` body that never
comes, a declared 10 GB body, a body trickled at a byte a second, a reset in
mid-body, an HTTP/1.0 answer ended by the close, a gzip-encoded answer, an
invalid status line, and a receiver closing kept-alive connections as the
next request arrives. All of them at once, beside a healthy subscription.

Each attempt ends as docs/guarantees.md says (read back through the admin
API), the healthy subscription gets every event, ``/healthz`` answers all
along, and the bridge's peak RSS stays under ``RSS_BOUND``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.delivery.answer_limits import (
    HEAD_TOO_LARGE,
    HEADER_LINE_TOO_LONG,
    STATUS_LINE_TOO_LONG,
    TOO_MANY_HEADERS,
)
from bridge.delivery.http1 import CUT_OFF
from tests.conftest import SECRET
from tests.support import hostile
from tests.support.admin import Admin, admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.process import started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import wait_until

RSS_BOUND = 150 * 1024 * 1024  # peak resident memory of the bridge process, in bytes
EACH = 3  # events per hostile subscription, so attempts at one receiver run side by side
HEALTHY = 60
TIMEOUT = "timeout after 2s"
INVALID = "the server's answer is not valid HTTP/1.1"

# What each receiver's attempts come to: (outcome, status code, error or its start).
EXPECTED: dict[str, tuple[str, int | None, str | None]] = {
    "endless_header_lines": ("failed", None, TOO_MANY_HEADERS),
    "heavy_header_lines": ("failed", None, HEAD_TOO_LARGE),
    "megabyte_header_line": ("failed", None, HEADER_LINE_TOO_LONG),
    "megabyte_status_line": ("failed", None, STATUS_LINE_TOO_LONG),
    "trickled_headers": ("failed", None, TIMEOUT),
    "endless_chunked_body": ("delivered", 200, None),
    "stalled_length_body": ("failed", None, TIMEOUT),
    "ten_gigabytes": ("delivered", 200, None),
    "trickled_body": ("failed", None, TIMEOUT),
    "reset_mid_body": ("failed", None, CUT_OFF),
    "http10_close_delimited": ("delivered", 200, None),
    "gzip_encoded": ("delivered", 200, None),
    "invalid_status_line": ("failed", None, INVALID),
}
STALE = "closes_kept_alive"
WITH_BODIES = ("endless_chunked_body", "ten_gigabytes", "gzip_encoded", "http10_close_delimited")


def _subscriptions(receivers: dict[str, hostile.Hostile], healthy: Receiver) -> list[Any]:
    """One subscription per hostile receiver, for its own event type; the healthy one."""
    subs: list[dict[str, Any]] = [
        {
            "name": name,
            "url": receiver.url,
            "events": [f"hostile.{name}"],
            "timeout": "2s",
            "circuit": {"enabled": False},
            # The stale receiver's events share one connection, reused.
            "max_in_flight": 1 if name == STALE else 256,
        }
        for name, receiver in receivers.items()
    ]
    return [
        *subs,
        {"name": "healthy", "url": healthy.url, "events": ["healthy.tick"], "secret": SECRET},
    ]


def _event(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    return (f"devices/dev-{n % 5}/events", {"type": kind, "id": f"{kind}-{n}", "seq": n})


def _hostile_events() -> list[tuple[str, dict[str, Any]]]:
    return [_event(f"hostile.{name}", n) for n in range(EACH) for name in EXPECTED]


async def _deliveries(admin: Admin, name: str) -> list[dict[str, Any]]:
    status, body = await admin.get("/api/deliveries", params={"subscription": name, "limit": "100"})
    assert status == 200, body
    return list(body["deliveries"])


async def _tried(admin: Admin, name: str, count: int) -> bool:
    deliveries = await _deliveries(admin, name)
    return len(deliveries) == count and all(d["attempts"] >= 1 for d in deliveries)


async def _excerpt(admin: Admin, delivery: dict[str, Any]) -> str:
    status, body = await admin.get(f"/api/deliveries/{delivery['id']}")
    assert status == 200, body
    return str(body["attempt_log"][-1]["response_excerpt"])


class HealthWatch:
    """Asks ``/healthz`` again and again while hostile receivers work; keeps every answer."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.unanswered = 0
        self.done = asyncio.Event()

    async def run(self, admin: Admin) -> None:
        for _ in range(10_000):  # bounded; ends when the test says
            if self.done.is_set():
                return
            try:
                async with asyncio.timeout(2.0):  # a generous deadline for a loop that keeps up
                    status, _ = await admin.get("/healthz")
                self.answers.append(status)
            except TimeoutError:
                self.unanswered += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 0.05)


@contextlib.asynccontextmanager
async def watching_health(admin: Admin) -> AsyncIterator[HealthWatch]:
    watch = HealthWatch()
    task = asyncio.create_task(watch.run(admin), name="healthz-watch")
    try:
        yield watch
    finally:
        watch.done.set()
        await asyncio.wait_for(task, 10)


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) * 1024


def _resends(metrics: str, name: str) -> float:
    pattern = rf'^hookbridge_http_resends_total\{{subscription="{name}"\}} (\S+)$'
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@dataclass
class Findings:
    """What the scenario saw, asserted once the bridge has stopped."""

    outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    excerpts: dict[str, str] = field(default_factory=dict)
    metrics: str = ""
    peak_rss: int = 0
    hostile_requests: dict[str, int] = field(default_factory=dict)
    healthy_seqs: set[int] = field(default_factory=set)


async def _publish_and_wait(
    admin: Admin, broker: Mosquitto, receivers: dict[str, hostile.Hostile], healthy: Receiver
) -> None:
    with Publisher(broker.port) as device:
        first = [_event(f"hostile.{STALE}", 0), *_hostile_events()]
        ticks = [_event("healthy.tick", n) for n in range(HEALTHY)]
        await asyncio.to_thread(device.publish_all, [*first, *ticks])
        # The stale receiver's second event goes on the connection its first one kept.
        await wait_until(lambda: _tried(admin, STALE, 1), timeout=30, message="stale #1")
        await asyncio.to_thread(device.publish_all, [_event(f"hostile.{STALE}", 1)])
    for name in [*EXPECTED, STALE]:
        count = 2 if name == STALE else EACH
        await wait_until(
            lambda name=name, count=count: _tried(admin, name, count),  # type: ignore[misc]
            timeout=60,
            message=f"every {name} delivery tried",
        )
    await wait_until(
        lambda: len(healthy.unique_ids()) >= HEALTHY,
        timeout=60,
        message="every healthy event delivered",
    )


async def _scenario(broker: Mosquitto, tmp_path: Path) -> Findings:
    misbehaviours = {name: getattr(hostile, name) for name in EXPECTED}
    misbehaviours[STALE] = hostile.closes_kept_alive
    found = Findings()
    async with hostile.hostile_receivers(misbehaviours) as receivers, receiving() as healthy:
        config = admin_config(
            broker,
            tmp_path,
            _subscriptions(receivers, healthy),
            retry={"schedule": ["1h"], "jitter": 0.0},  # one attempt each while the test runs
            event_types=[{"name": f"hostile.{name}"} for name in receivers]
            + [{"name": "healthy.tick"}],
        )
        with started_bridge(config, tmp_path) as bridge:
            assert bridge.process is not None
            async with admin_client(config) as admin:
                async with watching_health(admin) as watch:
                    await _publish_and_wait(admin, broker, receivers, healthy)
                for name in [*EXPECTED, STALE]:
                    found.outcomes[name] = await _deliveries(admin, name)
                for name in WITH_BODIES:
                    found.excerpts[name] = await _excerpt(admin, found.outcomes[name][0])
                status, metrics = await admin.get("/metrics")
                assert status == 200
                found.metrics = str(metrics)
            found.peak_rss = _peak_rss(bridge.process.pid)
            assert bridge.alive(), bridge.log()[-3000:]
            assert await bridge.stop() == 0
        found.hostile_requests = {name: r.requests for name, r in receivers.items()}
        found.healthy_seqs = {e["data"]["seq"] for e in healthy.events()}
    assert watch.unanswered == 0, f"/healthz did not answer {watch.unanswered} times"
    assert watch.answers and set(watch.answers) == {200}, watch.answers
    return found


@pytest.mark.timeout(240)
async def test_hostile_receivers_cost_their_own_attempts_only(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    found = await _scenario(mosquitto, tmp_path)
    # Each misbehaviour's attempts ended as documented.
    for name, (outcome, code, error) in EXPECTED.items():
        for delivery in found.outcomes[name]:
            assert delivery["attempts"] == 1, (name, delivery)
            assert delivery["last_status_code"] == code, (name, delivery)
            if outcome == "delivered":
                assert delivery["status"] == "delivered", (name, delivery)
            else:
                assert delivery["status"] == "pending", (name, delivery)  # retried in an hour
                assert (delivery["last_error"] or "").startswith(str(error)), (name, delivery)
    # Bodies: the cap's worth of an endless one; the close-delimited one whole; gzip undecoded.
    assert found.excerpts["endless_chunked_body"] == "c" * 2048
    assert found.excerpts["ten_gigabytes"] == "z" * 2048
    assert found.excerpts["http10_close_delimited"] == hostile.CLOSE_DELIMITED.decode()
    assert found.excerpts["gzip_encoded"].startswith("\x1f\ufffd")  # the gzip magic, as bytes
    assert "ok" not in found.excerpts["gzip_encoded"]
    # The stale connection: both events delivered on their first attempt, one resend.
    stale = found.outcomes[STALE]
    assert [(d["status"], d["attempts"]) for d in stale] == [("delivered", 1)] * 2
    assert found.hostile_requests[STALE] == 3  # the lost request, then its resend
    assert _resends(found.metrics, STALE) == 1.0
    # Beside them: every healthy event, and bounded memory.
    assert found.healthy_seqs == set(range(HEALTHY))
    assert found.peak_rss < RSS_BOUND, f"peak RSS {found.peak_rss / 2**20:.0f} MB"
