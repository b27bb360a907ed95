"""bench/RESULTS.md: the machine, the versions, one table per scenario, targets met or missed."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARK = "<!-- newest run first; each run is one section -->"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, load average {load} ({platform.platform()})"


def _latency(r: dict[str, Any]) -> str:
    lat = r.get("latency_ms")
    if not lat:
        return "-"
    return f"{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f}"


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['peer']} | not run: {r['error'][:160]} |" + " |" * 7
    extra = ""
    if "drain_s" in r:
        extra = f" ingest {r['ingest_s']} s, RSS after ingest {r['rss_ingested_mb']} MB"
    return (
        f"| {r['peer']} | {r['delivered']:,}/{r['sent']:,} | {r['duplicates']:,} "
        f"| {r['throughput']:,.0f} | {_latency(r)} | {r['peak_rss_mb']:.0f} | {r['cpu_s']:.1f} "
        f"| {r['connections']:,} | {r['elapsed_s']} s{extra} |"
    )


HEADER = (
    "| peer | delivered/sent | dup | events/s | latency ms p50/p90/p99/max | peak RSS MB "
    "| CPU s | connections | time |\n|---|---|---|---|---|---|---|---|---|"
)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated rounds, the run with the median throughput (errors only if all failed)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["throughput"])
    return ok[len(ok) // 2]


def render(
    results: dict[str, dict[str, list[dict[str, Any]]]],
    titles: dict[str, str],
    ceilings: dict[str, Any],
    verdicts: list[str],
    *,
    versions: dict[str, str],
    notes: list[str],
    rounds: int,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Run of {now}",
        "",
        f"- machine: {machine()}",
        f"- versions: {'; '.join(f'{k}: {v}' for k, v in versions.items())}",
        f"- rounds: {rounds} (interleaved scenario by scenario, peer by peer; "
        "tables show the median-throughput round)",
    ]
    lines += [f"- {n}" for n in notes]
    if ceilings:
        lines += [
            "",
            "Harness ceilings: "
            + ", ".join(f"{k} {v['rate']:,} ev/s" for k, v in ceilings.items() if "rate" in v),
        ]
    for name, by_peer in results.items():
        lines += ["", f"### {name}: {titles[name]}", "", HEADER]
        lines += [_row(median_run(runs)) for runs in by_peer.values()]
        if any(len(runs) > 1 for runs in by_peer.values()):
            spread = ", ".join(
                f"{peer} {statistics.median(ok):,.0f}"
                for peer, runs in by_peer.items()
                if (ok := [r["throughput"] for r in runs if "error" not in r])
            )
            lines.append(f"\nmedian events/s over rounds: {spread}")
    lines += ["", "### Targets (HookBridge)", ""]
    lines += [f"- {v}" for v in verdicts] or ["- none evaluated"]
    return "\n".join(lines) + "\n"


def prepend(path: Path, section: str) -> None:
    """Newest run first: the new section goes right under the file's header."""
    head = f"# Benchmark results\n\nWritten by `make bench` (`python -m bench`).\n\n{MARK}\n"
    old = path.read_text() if path.exists() else head
    if MARK not in old:
        old = head + old
    before, after = old.split(MARK, 1)
    path.write_text(f"{before}{MARK}\n\n{section}{after}")
