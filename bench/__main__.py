"""``python -m bench``: run the scenarios against HookBridge and its peers, write RESULTS.md.

Runs are interleaved (round by round, scenario by scenario, peer by peer) so
that noise on a shared machine hits every peer alike; the targets are judged
on the median of the rounds (three by default). Everything runs on 127.0.0.1
and every run is bounded in time; the harness stops by itself.

``--set headline`` is the stock-broker set plus the tuned burst (for the
harness-ceiling target); ``--set all`` adds the other tuned runs, the backlog
and PostgreSQL. ``--profile FILE`` keeps a py-spy profile of HookBridge's
first run (the stock burst in the headline set) and summarises it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import ceilings, postgres, report
from bench.broker import describe as broker_described
from bench.peers import PEERS, Peer, PeerUnavailable
from bench.peers.hookbridge import describe as hookbridge_described
from bench.profile import summarise
from bench.runner import run_one
from bench.scenarios import SETS, scenarios
from bench.targets import judge

DEFAULT_SCENARIOS = SETS["all"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scenario", action="append", choices=DEFAULT_SCENARIOS,
                        help="run only this scenario (repeatable)")  # fmt: skip
    parser.add_argument("--set", choices=sorted(SETS), default="all",
                        help="a set of scenarios; --scenario overrides it")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a few thousand events per run")
    parser.add_argument("--peers", default="hookbridge,naive,nodered,mqttwarn")
    parser.add_argument("--events", type=int, help="events per run (default 20,000)")
    parser.add_argument("--backlog", type=int, default=100_000, help="events in 'backlog'")
    parser.add_argument("--rounds", type=int, default=3, help="repeat every run this often")
    parser.add_argument("--no-ceilings", action="store_true", help="skip the harness ceilings")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of HookBridge here")
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    return parser.parse_args(argv)


def install(names: list[str]) -> tuple[dict[str, Peer], dict[str, str]]:
    ready: dict[str, Peer] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name not in PEERS:
            missing[name] = "unknown peer"
            continue
        peer = PEERS[name]()
        try:
            peer.install()
        except (PeerUnavailable, OSError) as exc:
            missing[name] = str(exc)
            print(f"peer {name} unavailable: {exc}", flush=True)
            continue
        ready[name] = peer
    return ready, missing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    chosen = args.scenario or SETS[args.set]
    table = scenarios(quick=args.quick, events=args.events, backlog=args.backlog)
    peers, missing = install([p.strip() for p in args.peers.split(",") if p.strip()])
    base = Path(tempfile.mkdtemp(prefix="hookbridge-bench-"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in chosen}
    notes: list[str] = [
        f"stock broker: mosquitto 2 {broker_described('stock')}; persistence off",
        f"tuned broker: mosquitto 2 {broker_described('tuned')}; persistence off",
        hookbridge_described(),
        "latency = publisher's sent_at → receiver's arrival time (same clock); "
        "CPU = the bridge's process tree, user + system, while the run lasts",
    ]
    notes += [f"peer {name} not run: {why}" for name, why in missing.items()]
    try:
        limits: dict[str, Any] = {}
        if not args.no_ceilings:
            count = 5_000 if args.quick else 20_000
            limits["receiver"] = ceilings.receiver_ceiling(base, count)
            limits["broker path"] = ceilings.broker_ceiling(base, count)
            print(f"ceilings: {limits}", flush=True)
        pg_missing = postgres.available() if "postgres" in chosen else None
        profiled: str | None = None
        for round_no in range(args.rounds):
            for name in chosen:
                scenario = table[name]
                if scenario.postgres:
                    _postgres(scenario, base, results, pg_missing, round_no, "hookbridge" in peers)
                    continue
                for peer_name, peer in peers.items():
                    workdir = base / f"r{round_no}-{name}-{peer_name}"
                    started = time.monotonic()
                    profile = None
                    if args.profile and peer_name == "hookbridge" and not profiled:
                        profile, profiled = args.profile, name
                    result = run_one(scenario, peer, workdir, profile=profile)
                    result["wall_s"] = round(time.monotonic() - started, 1)
                    print(json.dumps(result), flush=True)
                    results[name].setdefault(peer_name, []).append(result)
                    shutil.rmtree(workdir, ignore_errors=True)
        best = {n: {p: report.medians(r) for p, r in by.items()} for n, by in results.items()}
        verdicts = judge(best, limits, {n: table[n].delay for n in chosen})
        lower = min((c["rate"] for c in limits.values()), default=None)
        burst = best.get("tuned-burst", {}).get("hookbridge")
        if lower and burst and "error" not in burst:
            notes.append(f"HookBridge tuned burst throughput = {burst['throughput'] / lower:.0%} "
                         f"of the lower harness ceiling ({lower:,} ev/s)")  # fmt: skip
        profile_text = None
        if profiled and args.profile is not None and args.profile.exists():
            profile_text = f"{summarise(args.profile)}\n\n(profiled run: {profiled}, round 1)"
        versions = {"python": _python(), "hookbridge": version("hookbridge")}
        versions.update({n: p.version() for n, p in peers.items() if n != "hookbridge"})
        section = report.render(
            results,
            {n: table[n].title for n in chosen},
            limits,
            verdicts,
            versions=versions,
            notes=notes,
            rounds=args.rounds,
            profile=profile_text,
        )
        report.prepend(args.out, section)
        print(section, flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return {"results": results, "ceilings": limits, "verdicts": verdicts}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _postgres(
    scenario: Any,
    base: Path,
    results: dict[str, dict[str, list[dict[str, Any]]]],
    missing: str | None,
    round_no: int,
    wanted: bool,
) -> None:
    if not wanted:
        return
    if missing is not None:
        result = {"scenario": scenario.name, "peer": "hookbridge (PostgreSQL)", "error": missing}
        results[scenario.name].setdefault("hookbridge x1", []).append(result)
        print(json.dumps(result), flush=True)
        return
    for instances in (1, 2):
        workdir = base / f"r{round_no}-postgres-{instances}"
        try:
            result = postgres.run_postgres(scenario, workdir, instances)
        except Exception as exc:
            result = {"scenario": scenario.name, "peer": f"hookbridge x{instances} (PostgreSQL)",
                      "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
        print(json.dumps(result), flush=True)
        results[scenario.name].setdefault(f"hookbridge x{instances}", []).append(result)
        shutil.rmtree(workdir, ignore_errors=True)


def _python() -> str:
    import platform

    return platform.python_version()


if __name__ == "__main__":
    main()
