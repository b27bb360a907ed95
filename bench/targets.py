"""The issue's targets, judged on HookBridge's numbers from one run."""

from __future__ import annotations

from typing import Any


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def judge(best: dict[str, dict[str, dict[str, Any]]], ceilings: dict[str, Any]) -> list[str]:
    """``best[scenario][peer]`` is the run shown in the tables."""
    out: list[str] = []
    hb = {name: runs.get("hookbridge") for name, runs in best.items()}
    lower = min((c["rate"] for c in ceilings.values() if "rate" in c), default=None)
    burst = hb.get("burst")
    if burst and "error" not in burst:
        peers = [
            r["throughput"]
            for p, r in best["burst"].items()
            if p != "hookbridge" and "error" not in r
        ]
        all_in = burst["delivered"] >= burst["sent"]
        out.append(f"burst all delivered: {_ok(all_in)} ({burst['delivered']:,}/{burst['sent']:,})")
        if peers:
            ratio = burst["throughput"] / max(peers)
            out.append(f"burst >= 3x best peer: {_ok(ratio >= 3)} ({ratio:.2f}x, "
                       f"{burst['throughput']:,.0f} vs {max(peers):,.0f} ev/s)")  # fmt: skip
        if lower:
            share = burst["throughput"] / lower
            out.append(f"burst >= 50 % of the lower ceiling: {_ok(share >= 0.5)} "
                       f"({share:.0%} of {lower:,} ev/s)")  # fmt: skip
        out.append(f"burst peak RSS <= 120 MB: {_ok(burst['peak_rss_mb'] <= 120)} "
                   f"({burst['peak_rss_mb']:.0f} MB)")  # fmt: skip
    steady = hb.get("steady")
    if steady and "error" not in steady and steady.get("latency_ms"):
        p99 = steady["latency_ms"]["p99"]
        out.append(f"steady p99 <= 20 ms: {_ok(p99 <= 20)} ({p99:.1f} ms)")
    slow = hb.get("slow")
    if slow and "error" not in slow and slow.get("latency_ms"):
        p99 = slow["latency_ms"]["p99"]
        keeps = slow["throughput"] >= 990 and slow["delivered"] >= slow["sent"]
        bounded = slow["connections"] <= slow.get("max_in_flight", 64)
        out.append(f"slow receiver keeps up >= 990 ev/s: {_ok(keeps)} "
                   f"({slow['throughput']:,.0f} ev/s)")  # fmt: skip
        out.append(f"slow receiver p99 <= 120 ms: {_ok(p99 <= 120)} ({p99:.1f} ms)")
        out.append(f"slow receiver connections <= max_in_flight: {_ok(bounded)} "
                   f"({slow['connections']} <= {slow.get('max_in_flight', 64)})")  # fmt: skip
    failing = hb.get("failing")
    if failing and "error" not in failing:
        out.append(f"10 % failures, every event delivered: "
                   f"{_ok(failing['delivered'] >= failing['sent'])} "
                   f"({failing['delivered']:,}/{failing['sent']:,})")  # fmt: skip
    backlog = hb.get("backlog")
    if backlog and "error" not in backlog:
        rate = backlog["delivered"] / backlog["drain_s"] if backlog["drain_s"] else 0
        out.append(f"backlog all delivered: {_ok(backlog['delivered'] >= backlog['sent'])} "
                   f"({backlog['delivered']:,}/{backlog['sent']:,}; drain {rate:,.0f} ev/s "
                   f"in {backlog['drain_s']} s)")  # fmt: skip
        out.append(f"backlog RSS <= 150 MB throughout: {_ok(backlog['peak_rss_mb'] <= 150)} "
                   f"(peak {backlog['peak_rss_mb']:.0f} MB)")  # fmt: skip
    return out
