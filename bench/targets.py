"""The issue's targets, judged on HookBridge's medians over the rounds.

The stock-broker scenarios are the headline, judged against Node-RED run in
the same rounds: CPU per delivered event as a ratio to Node-RED's (at most
0.7 at a steady 1,000 ev/s, 1.0 at 200 ev/s, 0.5 in a burst), p50 and p99
latency at the steady rates, peak RSS and the throughput ratio of the burst.
The tuned ones keep the harness-ceiling target.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CPU_RATIO", "judge"]

CPU_RATIO = {"steady": 0.7, "steady200": 1.0, "burst": 0.5}
"""At most this share of Node-RED's CPU per event, in the same rounds."""
MIN_ROUNDS = 3


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def _burst(name: str, runs: dict[str, dict[str, Any]], lower: float | None) -> list[str]:
    burst = runs.get("hookbridge")
    if not burst or "error" in burst:
        return []
    out = [f"{name} all delivered: {_ok(burst['delivered'] >= burst['sent'])} "
           f"({burst['delivered']:,}/{burst['sent']:,})"]  # fmt: skip
    nodered = runs.get("nodered")
    if nodered and "error" not in nodered and nodered["throughput"]:
        ratio = burst["throughput"] / nodered["throughput"]
        out.append(f"{name} >= 3x Node-RED: {_ok(ratio >= 3)} ({ratio:.2f}x, "
                   f"{burst['throughput']:,.0f} vs {nodered['throughput']:,.0f} ev/s)")  # fmt: skip
    others = [r["throughput"] for p, r in runs.items() if p != "hookbridge" and "error" not in r]
    if others:
        out.append(f"{name} vs the best other peer: {burst['throughput'] / max(others):.2f}x")
    if lower and name.startswith("tuned"):
        share = burst["throughput"] / lower
        out.append(f"{name} >= 50 % of the lower ceiling: {_ok(share >= 0.5)} "
                   f"({share:.0%} of {lower:,} ev/s)")  # fmt: skip
    out.append(f"{name} peak RSS <= 120 MB: {_ok(burst['peak_rss_mb'] <= 120)} "
               f"({burst['peak_rss_mb']:.0f} MB)")  # fmt: skip
    return out


def _steady(name: str, run: dict[str, Any]) -> list[str]:
    if not run.get("latency_ms"):
        return []
    p50, p99 = run["latency_ms"]["p50"], run["latency_ms"]["p99"]
    out = [f"{name} p50 <= 3 ms: {_ok(p50 <= 3)} ({p50:.1f} ms)"]
    if name != "steady200":
        out.append(f"{name} p99 <= 20 ms: {_ok(p99 <= 20)} ({p99:.1f} ms)")
    out.append(f"{name} all delivered: {_ok(run['delivered'] >= run['sent'])} "
               f"({run['delivered']:,}/{run['sent']:,})")  # fmt: skip
    return out


def _cpu_ratio(name: str, runs: dict[str, dict[str, Any]]) -> list[str]:
    """HookBridge's CPU per event against Node-RED's in the same rounds."""
    hb, nodered = runs.get("hookbridge"), runs.get("nodered")
    if not hb or not nodered or "error" in nodered:
        return []
    ours, theirs = hb.get("cpu_us_per_event"), nodered.get("cpu_us_per_event")
    if not ours or not theirs:
        return []
    ratio = ours / theirs
    line = f"{name} CPU per event {ratio:.2f}x Node-RED's ({ours:,.0f} vs {theirs:,.0f} µs)"
    target = CPU_RATIO.get(name)
    if target is not None:
        line = f"{line}, target <= {target:.1f}x: {_ok(ratio <= target)}"
    return [line]


def _slow(name: str, run: dict[str, Any], delay_ms: float) -> list[str]:
    if not run.get("latency_ms"):
        return []
    over = run["latency_ms"]["p99"] - delay_ms
    keeps = run["throughput"] >= 990 and run["delivered"] >= run["sent"]
    cap = run.get("max_in_flight") or 256
    return [
        f"{name} keeps up >= 990 ev/s: {_ok(keeps)} ({run['throughput']:,.0f} ev/s)",
        f"{name} p99 <= 120 ms over the receiver's delay: {_ok(over <= 120)} "
        f"({over:.1f} ms over {delay_ms:.0f} ms)",
        f"{name} connections <= cap: {_ok(run['connections'] <= cap)} "
        f"({run['connections']} <= {cap})",
    ]


def _reader(run: dict[str, Any]) -> list[str]:
    """Another process holds a read transaction: no commit waits for it."""
    latency = run.get("latency_ms") or {}
    if not latency:
        return []
    worst, p99 = latency["max"], latency["p99"]
    return [
        f"reader: no event more than 1 s late: {_ok(worst <= 1000)} "
        f"(max {worst:,.0f} ms, p99 {p99:,.0f} ms)",
        f"reader: every event delivered: {_ok(run['delivered'] >= run['sent'])} "
        f"({run['delivered']:,}/{run['sent']:,})",
    ]


def judge(
    best: dict[str, dict[str, dict[str, Any]]],
    ceilings: dict[str, Any],
    delays: dict[str, float] | None = None,
) -> list[str]:
    """``best[scenario][peer]`` holds the medians over the rounds (see report.medians)."""
    delays = delays or {}
    out: list[str] = []
    lower = min((c["rate"] for c in ceilings.values() if "rate" in c), default=None)
    for name, runs in best.items():
        hb = runs.get("hookbridge")
        if hb is None or "error" in hb:
            continue
        if hb.get("rounds", 1) < MIN_ROUNDS:
            out.append(f"{name}: only {hb.get('rounds', 1)} round(s); targets need {MIN_ROUNDS}")
        if name.endswith("burst"):
            out += _burst(name, runs, lower)
        elif name.endswith(("steady", "steady200")):
            out += _steady(name, hb)
        elif "slow" in name:
            out += _slow(name, hb, delays.get(name, 0.0) * 1000)
        elif name == "failing":
            out.append(f"failing: every event delivered: {_ok(hb['delivered'] >= hb['sent'])} "
                       f"({hb['delivered']:,}/{hb['sent']:,})")  # fmt: skip
        elif name == "backlog":
            rate = hb["delivered"] / hb["drain_s"] if hb.get("drain_s") else 0
            out.append(f"backlog all delivered: {_ok(hb['delivered'] >= hb['sent'])} "
                       f"({hb['delivered']:,}/{hb['sent']:,}; drain {rate:,.0f} ev/s)")  # fmt: skip
            out.append(f"backlog RSS <= 150 MB throughout: {_ok(hb['peak_rss_mb'] <= 150)} "
                       f"(peak {hb['peak_rss_mb']:.0f} MB)")  # fmt: skip
        elif name == "reader":
            out += _reader(hb)
        dropped = hb.get("broker_dropped")
        if dropped:
            out.append(f"{name}: the broker dropped {dropped:,} messages: MISSED")
        out += _cpu_ratio(name, runs)
    return out
