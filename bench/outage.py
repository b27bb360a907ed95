"""``python -m bench.outage``: the first outage, as issue 24 measured it.

HookBridge with its default configuration (the default retry schedule, 5 s
then 5 min..., and the default circuit) sends to a receiver on this machine
while ``--devices`` devices each publish one event every ``--every`` seconds.
After a warm-up the receiver goes away (connections refused) for
``--refused`` seconds, then answers 503 for ``--failing`` seconds, then 2xx
again; the devices go on reporting for ``--after`` seconds more. The report
gives, for the events published during the outage, how long after the
receiver's return each was delivered (the target: all within 30 s), and how
many deliveries the catch-up made due (from the bridge's log). The result is
prepended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from bench import report
from bench.broker import Broker, free_port
from bench.peers.base import Launch, Peer, Running, Target

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument(
        "--every", type=float, default=5.0, help="seconds between a device's events"
    )
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--refused", type=float, default=90.0, help="seconds of refused connections"
    )
    parser.add_argument("--failing", type=float, default=90.0, help="seconds of 503 answers")
    parser.add_argument("--after", type=float, default=30.0, help="reporting after the return")
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"))
    return parser.parse_args(argv)  # fmt: skip


class Defaults(Peer):
    """HookBridge with its defaults: only the wiring (and private targets) set."""

    name = "hookbridge"

    def launch(self, target: Target) -> Launch:
        doc = {
            "mqtt": {"url": f"mqtt://127.0.0.1:{target.broker_port}", "client_id": "hb-outage"},
            "store": {"url": f"sqlite:///{target.workdir / 'hookbridge.db'}"},
            "security": {"allow_private_targets": True},
            "api": {"listen": None},
            "subscriptions": [{"name": "crm", "url": target.receiver_url, "secret": SECRET}],
        }
        path = target.workdir / "outage.yaml"
        path.write_text(yaml.safe_dump(doc))
        argv = [sys.executable, "-m", "bridge.cli", "run", "-c", str(path)]
        return Launch(argv=argv, env={"PYTHONUNBUFFERED": "1"}, ready_marker="connected to broker")


class Receiver:
    """Answers ``status`` (2xx or 503); records the first 2xx of every event (by seq)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 204
        self.delivered: dict[int, float] = {}
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        seq = json.loads(body).get("data", {}).get("seq")
        if self.status < 300 and isinstance(seq, int):  # a device's event, not presence
            self.delivered.setdefault(seq, time.time())
            self.arrived.set()
        return web.Response(status=self.status)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _devices(port: int, args: argparse.Namespace, until: float) -> dict[int, float]:
    """Each device publishes one event every ``--every`` s, staggered; returns publish times."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="devices")
    client.connect("127.0.0.1", port)
    client.loop_start()
    published: dict[int, float] = {}
    start = time.time()
    try:
        for tick in range(10**6):  # bounded by ``until``
            at = start + tick * args.every / args.devices
            if at >= until:
                break
            await asyncio.sleep(max(0.0, at - time.time()))
            device = f"dev-{tick % args.devices}"
            payload = {"type": "session.started", "id": f"{device}-{tick}", "seq": tick}
            client.publish(f"devices/{device}/events", json.dumps(payload), qos=1)
            published[tick] = time.time()
    finally:
        client.loop_stop()
        client.disconnect()
    return published


async def _outage(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    broker = Broker(workdir / "broker", "stock")
    receiver = Receiver(free_port())
    target = Target(broker.port, f"http://127.0.0.1:{receiver.port}/hook", workdir)
    broker.start()
    running: Running | None = None
    try:
        await receiver.up()
        running = Running(Defaults(), target)
        running.wait_ready(60)
        start = time.time()
        went = start + args.warmup
        back = went + args.refused + args.failing
        reporting = asyncio.create_task(_devices(broker.port, args, back + args.after))
        await asyncio.sleep(went - time.time())
        await receiver.down()  # refused
        await asyncio.sleep(args.refused)
        receiver.status = 503
        await receiver.up()
        await asyncio.sleep(args.failing)
        receiver.status = 204
        published = await reporting
        deadline = time.time() + 900
        while not set(receiver.delivered) >= set(published) and time.time() < deadline:
            receiver.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receiver.arrived.wait(), 1.0)
        log = running.log()
    finally:
        if running is not None:
            running.stop()
        await receiver.down()
        broker.stop()
    during = {e: at for e, at in published.items() if went <= at < back}
    late = sorted(receiver.delivered.get(e, deadline) - back for e in during)
    caught = sum(_caught_up(line) for line in log.splitlines())
    return {
        "args": vars(args) | {"out": str(args.out)},
        "published": len(published),
        "delivered": len(set(receiver.delivered) & set(published)),
        "during": len(during),
        "within_30s": sum(1 for s in late if s <= 30),
        "after_return_s": {"median": late[len(late) // 2], "max": late[-1]} if late else None,
        "caught_up": caught,
    }


def _caught_up(line: str) -> int:
    """The deliveries one ``caught up`` log line (a JSON line, off a terminal) counts."""
    try:
        entry = json.loads(line)
    except ValueError:
        return 0
    if not isinstance(entry, dict) or entry.get("event") != "caught up":
        return 0
    return int(entry.get("deliveries", 0))


def render(result: dict[str, Any]) -> str:
    a = result["args"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    after = result["after_return_s"] or {"median": 0, "max": 0}
    failing = f", then 503 for {a['failing']:g} s" if a["failing"] else ""
    return "\n".join(
        [
            f"## Outage: refused {a['refused']:g} s{failing} ({when})",
            "",
            f"HookBridge with its defaults (retry 5 s, 5 min, ...; circuit 5 failures, "
            f"10 s cool-down); {a['devices']} devices, one event each every {a['every']:g} s.",
            "",
            f"- delivered {result['delivered']} of {result['published']} published",
            f"- published during the outage: {result['during']}; delivered within 30 s of "
            f"the receiver's return: {result['within_30s']}",
            f"- after the return: median {after['median']:.1f} s, max {after['max']:.1f} s",
            f"- made due by the catch-up: {result['caught_up']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    return report.run_and_report(
        "hookbridge-outage-", lambda base: asyncio.run(_outage(args, base)), render, args.out
    )


if __name__ == "__main__":
    main()
