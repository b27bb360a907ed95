"""The webhook receiver, run as its own process (``python -m bench.receiver``).

It records, for every 2xx answer, when the request arrived, the event's key
(``webhook-id`` header, else the payload's ``seq``) and the publisher's
``sent_at`` carried in the payload; it counts duplicates and the distinct
client connections. It can answer slowly (``--delay``) or fail a fraction of
requests with 500 (``--fail-rate``). The harness reads a summary from
``GET /_bench/stats`` on the same port; that path is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import time
from typing import Any

import orjson
from aiohttp import web

STATS_PATH = "/_bench/stats"


class Recorder:
    """What arrived; summaries are computed on demand, not per request."""

    def __init__(self, delay: float, fail_rate: float, seed: int = 7) -> None:
        self.delay = delay
        self.fail_rate = fail_rate
        self.random = random.Random(seed)
        self.first_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.duplicates = 0
        self.failed = 0
        self.requests = 0
        self.peers: set[object] = set()
        self.last_at = 0.0

    def record(self, headers: Any, body: bytes, at: float) -> None:
        key = headers.get("webhook-id")
        sent_at = None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            data = doc.get("data")
            inner: dict[str, Any] = data if isinstance(data, dict) else doc
            sent_at = inner.get("sent_at")
            if key is None:
                key = str(inner.get("seq"))
        if key is None:
            key = f"body:{hash(body)}"
        if key in self.first_at:
            self.duplicates += 1
            return
        self.first_at[key] = at
        self.last_at = at
        if isinstance(sent_at, int | float):
            self.latencies.append(at - sent_at)

    def stats(self, with_latencies: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unique": len(self.first_at),
            "duplicates": self.duplicates,
            "failed": self.failed,
            "requests": self.requests,
            "connections": len(self.peers),
            "first_at": min(self.first_at.values()) if self.first_at else None,
            "last_at": self.last_at or None,
        }
        if with_latencies:
            out["latency"] = percentiles(self.latencies)
        return out


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50/p90/p99/max in milliseconds (nearest rank), or None when nothing arrived."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1

    def rank(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] * 1000, 2)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": rank(1.0)}


def make_app(recorder: Recorder) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        recorder.requests += 1
        transport = request.transport
        if transport is not None:
            recorder.peers.add(transport.get_extra_info("peername"))
        if recorder.delay:
            await asyncio.sleep(recorder.delay)
        if recorder.fail_rate and recorder.random.random() < recorder.fail_rate:
            recorder.failed += 1
            return web.Response(status=500, text="bench: failing on purpose")
        recorder.record(request.headers, body, at)
        return web.Response(status=200, text="ok")

    async def stats(request: web.Request) -> web.Response:
        full = request.query.get("latencies") == "1"
        return web.Response(
            body=orjson.dumps(recorder.stats(full)), content_type="application/json"
        )

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get(STATS_PATH, stats)
    app.router.add_route("*", "/{tail:.*}", hook)
    return app


async def serve(port: int, recorder: Recorder, lifetime: float) -> None:
    runner = web.AppRunner(make_app(recorder), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bounded: a forgotten receiver leaves by itself.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, Recorder(args.delay, args.fail_rate), args.lifetime))


if __name__ == "__main__":
    main()
