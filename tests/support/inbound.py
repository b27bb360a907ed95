"""Inbound webhooks from the sender's side: routes that publish device commands,
Standard Webhooks requests signed as a sender signs them, and a running bridge
with its inbound listener, a device watching ``devices/#`` and an HTTP client."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from bridge.app import Bridge
from bridge.core.signing import sign
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until

__all__ = ["InboundBridge", "command_route", "inbound_bridge", "signed_request"]


def command_route(name: str, **extra: Any) -> dict[str, Any]:
    """An inbound route ``/inbound/<name>`` (signed with ``SECRET``) publishing the
    body to ``devices/<device_id>/commands``; ``extra`` adds or replaces keys."""
    return {
        "name": name,
        "path": f"/inbound/{name}",
        "secret": SECRET,
        "topic": "devices/{body.device_id}/commands",
        "allow_topics": ["devices/+/commands"],
        **extra,
    }


def signed_request(
    payload: Any,
    *,
    msg_id: str | None = None,
    stamp: int | None = None,
    secret: str = SECRET,
    raw: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and Standard Webhooks headers of a JSON request (``raw`` sent as the
    body instead of ``payload`` encoded), signed now unless ``stamp`` says when."""
    body = raw if raw is not None else json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{time.monotonic_ns()}"
    stamp = int(time.time()) if stamp is None else stamp
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }
    return body, headers


class InboundBridge(NamedTuple):
    bridge: Bridge
    session: aiohttp.ClientSession
    base: str  # the inbound listener's URL
    device: Publisher  # subscribed to devices/#


@contextlib.asynccontextmanager
async def inbound_bridge(
    broker: Mosquitto, tmp_path: Path, inbound: list[dict[str, Any]]
) -> AsyncIterator[InboundBridge]:
    """A bridge with only ``inbound`` routes (no admin API), connected to ``broker``."""
    config = bridge_config(
        broker,
        tmp_path,
        [],
        inbound=inbound,
        api={"listen": None, "inbound_listen": "127.0.0.1:0"},
    )
    async with running_bridge(config) as bridge:
        await wait_until(lambda: bridge.ingest.connected, timeout=10, message="connected")
        with Publisher(broker.port) as device:
            device.subscribe("devices/#")
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{bridge.inbound.port}"
                yield InboundBridge(bridge, session, base, device)
