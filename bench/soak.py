"""``python -m bench.soak``: a long steady stream, to see that memory has a ceiling.

HookBridge with its default configuration (the stock broker, one subscription,
a local receiver) takes ``--rate`` events per second for ``--minutes``. The
bridge's RSS is sampled every 100 ms; the report gives its median per minute,
the growth over the second half (after warm-up), CPU per event and what was
delivered. The result is prepended to bench/RESULTS.md.

Growth per event shows as a line that keeps rising; a bounded process shows a
flat one after the first minutes (caches, pools and windows filling up).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.broker import Broker, free_port
from bench.monitor import INTERVAL, Monitor
from bench.peers import Running, Target
from bench.peers.hookbridge import HookBridge
from bench.processes import ReceiverProcess, publisher_result, start_publisher
from bench.runner import MB, per_event, wait_delivered

_PER_MINUTE = int(60 / INTERVAL)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"))
    return parser.parse_args(argv)


def minute_medians(samples: list[int]) -> list[float]:
    """The median RSS (MB) of each whole minute of samples."""
    return [
        round(statistics.median(samples[i : i + _PER_MINUTE]) / MB, 1)
        for i in range(0, len(samples) - _PER_MINUTE + 1, _PER_MINUTE)
    ]


def soak(minutes: float, rate: float, workdir: Path) -> dict[str, Any]:
    count = int(minutes * 60 * rate)
    broker = Broker(workdir / "broker", "stock")
    # It must outlive the stream and the wait for the last deliveries.
    receiver = ReceiverProcess(
        free_port(), workdir, delay=0.0, fail_rate=0.0, lifetime=minutes * 60 + 600
    )
    target = Target(broker.port, receiver.url, workdir, max_in_flight=None, extra={})
    result: dict[str, Any] = {"minutes": minutes, "rate": rate, "sent": count}
    running: Running | None = None
    try:
        broker.start()
        receiver.start()
        running = Running(HookBridge(), target)
        running.wait_ready(90)
        deadline = minutes * 60 * 2 + 120
        with Monitor(running.pid) as monitor:
            publisher = start_publisher(broker.port, count, rate, uuid.uuid4().hex[:8], deadline)
            published = publisher_result(publisher, deadline + 30)
            stats = wait_delivered(receiver, count, deadline=time.monotonic() + 120, stall=30)
            cpu = monitor.cpu_used()
            samples = list(monitor.samples)
        by_minute = minute_medians(samples)
        half = len(by_minute) // 2
        result.update(
            published=published["acked"],
            delivered=stats["unique"],
            duplicates=stats["duplicates"],
            cpu_us_per_event=per_event(cpu, stats["unique"]),
            rss_by_minute_mb=by_minute,
            peak_rss_mb=round(max(samples, default=0) / MB, 1),
            second_half_growth_mb=(
                round(by_minute[-1] - by_minute[half], 1) if len(by_minute) > 1 else None
            ),
        )
    finally:
        if running is not None:
            running.stop()
        receiver.stop()
        broker.stop()
    return result


def render(result: dict[str, Any]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    minutes = result["rss_by_minute_mb"]
    lines = [
        f"## Soak: {result['rate']:g} ev/s for {result['minutes']:g} min ({when})",
        "",
        f"- delivered {result['delivered']:,} of {result['sent']:,} "
        f"(published {result['published']:,}, duplicates {result['duplicates']})",
        f"- CPU {result['cpu_us_per_event']} µs per event",
        f"- RSS: peak {result['peak_rss_mb']} MB; growth over the second half "
        f"{result['second_half_growth_mb']} MB",
        f"- RSS by minute (median, MB): {', '.join(str(m) for m in minutes)}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    return report.run_and_report(
        "hookbridge-soak-", lambda base: soak(args.minutes, args.rate, base), render, args.out
    )


if __name__ == "__main__":
    main()
