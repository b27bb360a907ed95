"""bench/RESULTS.md: the machine, the versions, one table per scenario, targets met or missed."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable
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


def _cpu_per_event(r: dict[str, Any]) -> str:
    value = r.get("cpu_us_per_event")
    return "-" if value is None else f"{value:,.0f}"


def _dropped(r: dict[str, Any]) -> str:
    value = r.get("broker_dropped")
    return "?" if value is None else f"{value:,}"


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['peer']} | not run: {r['error'][:160]} |" + " |" * 9
    extra = ""
    if "drain_s" in r:
        extra = f" ingest {r['ingest_s']} s, RSS after ingest {r['rss_ingested_mb']} MB"
    if "log_peak_mb" in r:
        extra = f"; {_reader(r)}"
    return (
        f"| {r['peer']} | {r['delivered']:,}/{r['sent']:,} | {r['duplicates']:,} "
        f"| {_dropped(r)} | {r['throughput']:,.0f} | {_latency(r)} | {r['peak_rss_mb']:.0f} "
        f"| {r['cpu_s']:.1f} | {_cpu_per_event(r)} | {r['connections']:,} "
        f"| {r['elapsed_s']} s{extra} |"
    )


def _reader(r: dict[str, Any]) -> str:
    """What the log did around the reader of the ``reader`` scenario."""
    cut = r.get("log_cut_back_s")
    said = " ".join(r.get("reader_said") or []) or "nothing"
    return (
        f"-wal peak {r['log_peak_mb']} MB while the reader held, "
        + ("not cut back to 16 MB" if cut is None else f"<= 16 MB {cut} s after it left")
        + f", {r['log_end_mb']} MB at the end; reader said: {said}"
        + (f"; reader error: {r['reader_error']}" if r.get("reader_error") else "")
    )


HEADER = (
    "| peer | delivered/sent | dup | broker dropped | events/s | latency ms p50/p90/p99/max "
    "| peak RSS MB | CPU s | CPU µs/event | connections | time |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated rounds, the run with the median throughput (errors only if all failed)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["throughput"])
    return ok[len(ok) // 2]


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the targets are judged on: each figure's median over the rounds.

    Counts that must hold in every round (delivered, dropped) take the worst
    round instead; peak RSS takes the largest.
    """
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out: dict[str, Any] = dict(median_run(runs))
    out["rounds"] = len(ok)
    out["throughput"] = _median([r["throughput"] for r in ok])
    out["delivered"] = min(r["delivered"] for r in ok)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    out["connections"] = max(r["connections"] for r in ok)
    dropped = [r.get("broker_dropped") for r in ok]
    out["broker_dropped"] = None if None in dropped else max(d or 0 for d in dropped)
    cpu = [r["cpu_us_per_event"] for r in ok if r.get("cpu_us_per_event") is not None]
    out["cpu_us_per_event"] = _median(cpu) if cpu else None
    latencies = [r["latency_ms"] for r in ok if r.get("latency_ms")]
    if latencies:
        out["latency_ms"] = {k: _median([lat[k] for lat in latencies]) for k in latencies[0]}
    if all("drain_s" in r for r in ok):
        out["drain_s"] = _median([r["drain_s"] for r in ok])
    return out


def render(
    results: dict[str, dict[str, list[dict[str, Any]]]],
    titles: dict[str, str],
    ceilings: dict[str, Any],
    verdicts: list[str],
    *,
    versions: dict[str, str],
    notes: list[str],
    rounds: int,
    profile: str | None = None,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Run of {now}",
        "",
        f"- machine: {machine()}",
        f"- versions: {'; '.join(f'{k}: {v}' for k, v in versions.items())}",
        f"- rounds: {rounds} (interleaved scenario by scenario, peer by peer; "
        "tables show the median-throughput round; targets use the medians below them)",
    ]
    lines += [f"- {n}" for n in notes]
    if profile:
        lines += ["", profile]
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
            lines += ["", "medians over the rounds (what the targets are judged on):", ""]
            lines += [_median_line(peer, runs) for peer, runs in by_peer.items()]
    lines += ["", "### Targets (HookBridge)", ""]
    lines += [f"- {v}" for v in verdicts] or ["- none evaluated"]
    return "\n".join(lines) + "\n"


def _median_line(peer: str, runs: list[dict[str, Any]]) -> str:
    m = medians(runs)
    if "error" in m:
        return f"- {peer}: no successful round"
    p99 = m["latency_ms"]["p99"] if m.get("latency_ms") else None
    each = ", ".join(f"{r['throughput']:,.0f}" for r in runs if "error" not in r)
    return (
        f"- {peer}: {m['throughput']:,.0f} ev/s over {m['rounds']} rounds (each: {each})"
        + (f", p99 {p99:,.1f} ms" if p99 is not None else "")
        + f", CPU {_cpu_per_event(m)} µs/event"
    )


def prepend(path: Path, section: str) -> None:
    """Newest run first: the new section goes right under the file's header."""
    head = f"# Benchmark results\n\nWritten by `make bench` (`python -m bench`).\n\n{MARK}\n"
    old = path.read_text() if path.exists() else head
    if MARK not in old:
        old = head + old
    before, after = old.split(MARK, 1)
    path.write_text(f"{before}{MARK}\n\n{section}{after}")


def run_and_report(
    prefix: str,
    work: Callable[[Path], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    out: Path,
) -> dict[str, Any]:
    """Run ``work`` in a scratch folder (removed after), prepend its rendered section
    to ``out`` and print it: what the standalone bench scripts do."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = work(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    section = render(result)
    prepend(out, section)
    print(section, flush=True)
    return result
