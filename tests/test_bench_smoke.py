"""The benchmark harness still runs: a few hundred events through HookBridge and the naive peer.

Correctness only (everything delivered, every report field present); timing
is the benchmark's business, not the suite's.
"""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import main

FIELDS = {
    "delivered", "sent", "duplicates", "throughput", "latency_ms", "peak_rss_mb", "cpu_s",
    "connections", "elapsed_s", "cpu_us_per_event", "broker_dropped", "broker",
}  # fmt: skip


def test_bench_harness_delivers_everything_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    summary = main(
        ["--quick", "--scenario", "burst", "--peers", "hookbridge,naive", "--events", "300",
         "--no-ceilings", "--rounds", "1", "--out", str(out)]
    )  # fmt: skip
    runs = summary["results"]["burst"]
    assert set(runs) == {"hookbridge", "naive"}
    for peer, results in runs.items():
        (result,) = results
        assert "error" not in result, result
        assert set(result) >= FIELDS, (peer, result)
        assert result["delivered"] == result["sent"] == 300, (peer, result)
        assert set(result["latency_ms"]) == {"p50", "p90", "p99", "max"}
        # The headline set runs against a stock broker, which must drop nothing.
        assert result["broker"] == "stock"
        assert result["broker_dropped"] == 0, (peer, result)
        assert result["cpu_us_per_event"] > 0
    text = out.read_text()
    assert "### burst" in text
    assert "| hookbridge | 300/300 | 0 | 0 |" in text  # no duplicate, no broker drop
    assert "CPU µs/event" in text


def test_the_outage_script_runs_and_reports(tmp_path: Path) -> None:
    from bench.outage import main as outage

    out = tmp_path / "RESULTS.md"
    args = ["--devices", "3", "--every", "1", "--warmup", "1", "--refused", "3"]
    result = outage([*args, "--failing", "3", "--after", "1", "--out", str(out)])
    assert result["delivered"] == result["published"] > 0
    assert result["within_30s"] == result["during"] > 0
    assert "## Outage: refused 3 s, then 503 for 3 s" in out.read_text()
