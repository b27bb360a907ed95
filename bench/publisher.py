"""The device side, run as its own process (``python -m bench.publisher``).

Publishes ``--count`` QoS 1 messages on ``devices/dev-N/events`` with a
``sent_at`` timestamp and a ``seq``, either as fast as the broker takes them
(``--rate 0``) or paced to a steady rate. Prints one JSON line: when the
first message was published, when the last PUBACK came, how many were acked.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

DEVICES = 50
INFLIGHT = 1000


def payload(run: str, seq: int) -> bytes:
    return orjson.dumps(
        {
            "type": "session.started",
            "id": f"{run}-{seq}",
            "sent_at": time.time(),
            "seq": seq,
            "session_id": f"s-{seq}",
        }
    )


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(INFLIGHT)
        self.client.max_queued_messages_set(0)
        self.acked = 0
        self.last_ack = 0.0
        self.done = threading.Event()
        self.target = 0
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def _on_publish(self, *_args: object) -> None:
        self.acked += 1
        self.last_ack = time.time()
        if self.acked >= self.target:
            self.done.set()

    def run(self, run: str, count: int, rate: float, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.target = count
        first = time.time()
        started = time.monotonic()
        for seq in range(count):
            if rate > 0:
                # Pace against the schedule, not the previous send: no drift.
                wait = started + seq / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            topic = f"devices/dev-{seq % DEVICES}/events"
            # paho queues beyond its in-flight window; wait for room, bounded.
            for _ in range(100_000):
                info = self.client.publish(topic, payload(run, seq), qos=1)
                if info.rc == paho.MQTT_ERR_SUCCESS:
                    break
                time.sleep(0.0005)
            if time.monotonic() - started > timeout:
                break
        published = time.time()
        self.done.wait(max(1.0, timeout - (time.monotonic() - started)))
        self.client.disconnect()
        self.client.loop_stop()
        return {
            "first_publish": first,
            "last_publish": published,
            "last_puback": self.last_ack,
            "acked": self.acked,
            "count": count,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--run", default=uuid.uuid4().hex[:8])
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    result = Publisher(args.port).run(args.run, args.count, args.rate, args.timeout)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
