"""The naive bridge people write first: paho callback + one blocking POST per message.

QoS 1 with paho's automatic acknowledgement (the PUBACK goes out when the
callback returns, nothing is stored), one ``urllib`` request per message on a
new connection, no retries: a failed POST is lost. Run as
``python -m bench.peers.naive --port P --url URL``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()

    def on_connect(client: paho.Client, *_rest: object) -> None:
        client.subscribe("devices/+/events", qos=1)
        print("naive bridge subscribed", flush=True)

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        request = urllib.request.Request(
            args.url, data=msg.payload, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError):
            pass  # the naive bridge drops what it cannot send

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"naive-{uuid.uuid4().hex[:8]}",
    )
    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
