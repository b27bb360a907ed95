"""The harness's own ceilings: how fast could any bridge possibly go on this machine?

* receiver: the most POSTs/s the receiver answers to a keep-alive aiohttp
  client (16 connections), with the same kind of body a bridge sends;
* broker path: publisher → mosquitto → a paho subscriber that only counts
  (``python -m bench.ceilings --count-port P --count N`` is that subscriber).

A bridge adds work to both paths, so the lower ceiling bounds its throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.broker import Broker, free_port
from bench.peers.base import REPO
from bench.processes import ReceiverProcess, publisher_result, start_publisher

CLIENT_CONNECTIONS = 16


async def _post_all(url: str, count: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for seq in range(count):
            queue.put_nowait(seq)

        async def worker() -> None:
            while not queue.empty():
                seq = queue.get_nowait()
                body = orjson.dumps({"type": "session.started", "seq": seq, "sent_at": time.time()})
                async with session.post(
                    url, data=body, headers={"webhook-id": f"c-{seq}"}
                ) as response:
                    await response.read()

        started = time.time()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(CLIENT_CONNECTIONS))), timeout=300
        )
        return started, time.time()


def receiver_ceiling(workdir: Path, count: int) -> dict[str, Any]:
    receiver = ReceiverProcess(free_port(), workdir, delay=0.0, fail_rate=0.0)
    receiver.start()
    try:
        started, ended = asyncio.run(_post_all(receiver.url, count))
        stats = receiver.stats()
    finally:
        receiver.stop()
    return {"events": count, "received": stats["unique"], "rate": round(count / (ended - started))}


def broker_ceiling(workdir: Path, count: int) -> dict[str, Any]:
    broker = Broker(workdir / "broker-ceiling")
    broker.start()
    counter = subprocess.Popen(
        [sys.executable, "-m", "bench.ceilings", "--count-port", str(broker.port),
         "--count", str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        assert counter.stdout is not None
        counter.stdout.readline()  # "subscribed"
        publisher = start_publisher(broker.port, count, 0.0, uuid.uuid4().hex[:8], 300)
        published = publisher_result(publisher, 330)
        out, _ = counter.communicate(timeout=330)
        counted = orjson.loads(out.strip().splitlines()[-1])
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait(10)
        broker.stop()
    elapsed = counted["last"] - published["first_publish"]
    return {
        "events": count,
        "received": counted["count"],
        "rate": round(counted["count"] / elapsed),
    }


def _count(port: int, count: int, timeout: float = 300.0) -> None:
    """The counting subscriber: QoS 1, counts, prints when it saw ``count`` or timed out."""
    seen = {"count": 0, "last": 0.0}
    done = threading.Event()

    def on_message(*_a: object) -> None:
        seen["count"] += 1
        seen["last"] = time.time()
        if seen["count"] >= count:
            done.set()

    subscribed = threading.Event()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe("devices/+/events", qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    subscribed.wait(10)
    print("subscribed", flush=True)
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    print(orjson.dumps(seen).decode(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count-port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    _count(args.count_port, args.count)
