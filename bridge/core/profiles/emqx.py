"""The built-in ``emqx`` profile: EMQX's client (dis)connection system topics.

EMQX publishes ``$SYS/brokers/{node}/clients/{clientid}/connected`` and
``…/disconnected``; the client id is the device id, every field is kept as
sent, ``reason`` (normal, kicked, keepalive_timeout, tcp_closed, …) is
EMQX's own, and ``broker_node`` names the node::

    $SYS/brokers/emqx@127.0.0.1/clients/dev-42/connected
    {"clientid": "dev-42", "username": "ayu", "ipaddress": "10.0.0.7",
     "proto_name": "MQTT", "proto_ver": 5, "keepalive": 60, "clean_start": true,
     "connack": 0, "expiry_interval": 0, "sockport": 1883,
     "connected_at": 1732250174553, "ts": 1732250174553}

    $SYS/brokers/emqx@127.0.0.1/clients/dev-42/disconnected
    {"clientid": "dev-42", "username": "ayu", "reason": "keepalive_timeout",
     "disconnected_at": 1732250290117, "ts": 1732250290117}

``connected_at`` / ``disconnected_at`` (milliseconds) become the event time
and, with the topic, the message id: a redelivered notice is one event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.core.profiles.base import Draft, Payload, Rejected
from bridge.core.profiles.broker_presence import STATES, client_document, match_levels

__all__ = ["EmqxProfile"]


class EmqxProfile:
    """``$SYS/brokers/{node}/clients/{clientid}/connected|disconnected``."""

    @property
    def name(self) -> str:
        return "emqx"

    def topic_filters(self) -> list[str]:
        return ["$SYS/brokers/+/clients/+/connected", "$SYS/brokers/+/clients/+/disconnected"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        return match_levels(
            levels, ("$SYS", "brokers", "{node}", "clients", "{device_id}", "{what}")
        )

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        document = client_document(payload, named, "EMQX", "clientid")
        if isinstance(document, Rejected):
            return document
        client, what = named["device_id"], named["what"]
        stamp_key = "connected_at" if what == "connected" else "disconnected_at"
        occurred = document.get(stamp_key, document.get("ts"))
        fields = {key: value for key, value in document.items() if key not in {"id", "type"}}
        fields["broker_node"] = named["node"]
        return Draft(
            type=STATES[what],
            device_id=client,
            fields=fields,
            # The broker's own time of the (dis)connection names the message.
            message_id=f"emqx:{what}:{occurred}" if occurred is not None else None,
            occurred_at=occurred,
        )
