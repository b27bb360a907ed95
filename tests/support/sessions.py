"""MQTT 5 clients on persistent sessions: what the broker queued for them while
they (or it) were away arrives when they are back."""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.waiting import wait_until_sync

__all__ = ["persistent_client"]


def persistent_client(
    port: int,
    client_id: str,
    *,
    on_message: Callable[[paho.MQTTMessage], None] | None = None,
    configure: Callable[[paho.Client], None] | None = None,
) -> paho.Client:
    """A connected MQTT 5 client (its loop running) whose session outlives it by an hour."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if configure is not None:
        configure(client)
    client.reconnect_delay_set(0.1, 1)
    if on_message is not None:
        client.on_message = lambda _c, _u, msg: on_message(msg)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=properties)
    client.loop_start()
    wait_until_sync(client.is_connected, timeout=10, message=f"{client_id} connected")
    return client
