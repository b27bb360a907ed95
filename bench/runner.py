"""One run: one scenario against one bridge, on a fresh broker, receiver and store."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.broker import Broker, free_port
from bench.monitor import Monitor
from bench.peers import Peer, PeerUnavailable, Running, Target
from bench.processes import ReceiverProcess, publisher_result, start_publisher
from bench.reader import HeldRead
from bench.scenarios import Scenario

MB = 1024 * 1024


def per_event(cpu_s: float, delivered: int) -> float | None:
    """Microseconds of the bridge's process-tree CPU per delivered event."""
    return round(cpu_s / delivered * 1e6, 1) if delivered else None


def per_event_io(counts: list[dict[str, int]], delivered: int) -> dict[str, float | None]:
    """System calls, bytes written and waits of the bridge per delivered event (counts:
    steadier than CPU seconds on a busy machine, and what fewer commits and hand-overs
    should lower)."""
    if not delivered:
        return {}
    total = {
        key: sum(c.get(key, 0) for c in counts) for key in ("reads", "writes", "written", "waits")
    }
    return {
        "syscalls_per_event": round((total["reads"] + total["writes"]) / delivered, 2),
        "written_kb_per_event": round(total["written"] / 1024 / delivered, 2),
        "waits_per_event": round(total["waits"] / delivered, 2),
    }


def wait_idle(pid: int, *, timeout: float, busy: float = 0.15) -> None:
    """Wait until the process tree uses less than ``busy`` of a core for two seconds."""
    try:
        process = psutil.Process(pid)
        quiet = 0
        deadline = time.monotonic() + timeout
        last = sum(process.cpu_times()[:2])
        while time.monotonic() < deadline and quiet < 2:
            time.sleep(1.0)
            now = sum(process.cpu_times()[:2])
            quiet = quiet + 1 if now - last < busy else 0
            last = now
    except psutil.Error:
        return


def wait_delivered(
    receiver: ReceiverProcess, count: int, *, deadline: float, stall: float
) -> dict[str, Any]:
    """Poll the receiver until every event arrived, nothing moved for ``stall`` s, or deadline."""
    stats = receiver.stats()
    seen, moved = -1, time.monotonic()
    while time.monotonic() < deadline:
        stats = receiver.stats()
        if stats["unique"] >= count:
            break
        progress = stats["unique"] + stats["failed"] + stats["duplicates"]
        if progress != seen:
            seen, moved = progress, time.monotonic()
        elif time.monotonic() - moved > stall:
            break
        time.sleep(0.25)
    return stats


def _profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the peer (``--profile``); None when py-spy is not installed."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--nonblocking", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_one(
    scenario: Scenario,
    peer: Peer,
    workdir: Path,
    *,
    profile: Path | None = None,
    instances: Sequence[Peer] | None = None,
    extra: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` against ``peer`` (or several ``instances`` of one bridge).

    Every process started here is stopped here.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"scenario": scenario.name, "peer": peer.name, "sent": scenario.events}
    result["max_in_flight"] = scenario.max_in_flight
    result["broker"] = scenario.broker
    broker = Broker(workdir / "broker", scenario.broker)
    receiver = ReceiverProcess(
        free_port(), workdir, delay=scenario.delay, fail_rate=scenario.fail_rate
    )
    wiring = {**(extra or {}), **({"ordered": True} if scenario.ordered else {})}
    target = Target(
        broker.port, receiver.url, workdir, max_in_flight=scenario.max_in_flight, extra=wiring
    )
    started: list[Running] = []
    database = peer.store_file(target) if scenario.reader_hold else None
    try:
        if scenario.reader_hold and database is None:
            raise PeerUnavailable("no SQLite file of its own for another process to read")
        broker.start()
        if not scenario.receiver_down:
            receiver.start()
        for each in instances or [peer]:
            started.append(Running(each, target))
        for running in started:
            running.wait_ready(90)
        spy = _profiler(started[0].pid, profile) if profile is not None else None
        with contextlib.ExitStack() as stack:
            monitors = [stack.enter_context(Monitor(r.pid)) for r in started]
            result.update(
                _drive(scenario, started[0], receiver, broker, monitors[0], database=database)
            )
            result["cpu_s"] = round(sum(m.cpu_used() for m in monitors), 2)
            io = [m.io_used() for m in monitors]
        result["cpu_us_per_event"] = per_event(result["cpu_s"], result.get("delivered", 0))
        result.update(per_event_io(io, result.get("delivered", 0)))
        result["broker_dropped"] = broker.dropped()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(30)
        # Several instances: the largest one's peak (each is a process of its own).
        result["peak_rss_mb"] = round(max(m.peak_rss for m in monitors) / MB, 1)
    except (PeerUnavailable, RuntimeError) as exc:
        result["error"] = str(exc)
    finally:
        for running in started:
            running.stop()
        receiver.stop()
        broker.stop()
    return result


def _drive(
    scenario: Scenario,
    running: Running,
    receiver: ReceiverProcess,
    broker: Broker,
    monitor: Monitor,
    *,
    database: Path | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    run_id = uuid.uuid4().hex[:8]
    publisher = start_publisher(
        broker.port, scenario.events, scenario.rate, run_id, scenario.deadline()
    )
    reader = None
    if database is not None:
        out_file = database.with_name("reader.out")
        reader = HeldRead(
            database, after=scenario.reader_after, hold=scenario.reader_hold, out=out_file
        )
        reader.start()
    try:
        out.update(_deliver(scenario, running, receiver, monitor, publisher))
    finally:
        if reader is not None:
            out.update(reader.stop())
    return out


def _deliver(
    scenario: Scenario,
    running: Running,
    receiver: ReceiverProcess,
    monitor: Monitor,
    publisher: subprocess.Popen[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    published = publisher_result(publisher, scenario.deadline() + 30)
    start = published["first_publish"]
    out["published"] = published["acked"]
    if scenario.receiver_down:
        # Everything is accepted by the bridge (or lost by it) before the receiver is back.
        wait_idle(running.pid, timeout=600)
        out["ingest_s"] = round(time.time() - start, 1)
        out["rss_ingested_mb"] = round(monitor.peak_rss / MB, 1)
        receiver.start()
        start = time.time()
    stats = wait_delivered(
        receiver,
        scenario.events,
        deadline=time.monotonic() + scenario.deadline(),
        stall=scenario.stall,
    )
    stats = receiver.stats(latencies=True)
    delivered = stats["unique"]
    elapsed = (stats["last_at"] or start) - start
    out.update(
        delivered=delivered,
        duplicates=stats["duplicates"],
        failed_answers=stats["failed"],
        connections=stats["connections"],
        elapsed_s=round(elapsed, 2),
        throughput=round(delivered / elapsed, 1) if elapsed > 0 else 0.0,
        latency_ms=None if scenario.receiver_down else stats.get("latency"),
    )
    if scenario.receiver_down:
        out["drain_s"] = round(elapsed, 1)
    return out
