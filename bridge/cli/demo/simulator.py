"""Simulated devices that walk through the whole event catalogue, in a realistic order.

Each device is added, comes online, reports telemetry, gets a scheduled
session that starts, a customer joins, files move (one transfer fails on one
device), the session
ends, a bulk deployment runs (and fails on one device), the device goes
offline and is deleted. Messages use the native topics
(``devices/{id}/lifecycle|status|events``) with a message ``id`` and a
per-device ``seq``, as real firmware would. Devices are interleaved, and new
devices keep arriving in rounds until the demo stops.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bridge.cli.demo.broker import connected

__all__ = ["Device", "DeviceMessage", "Simulator", "device_script", "messages"]

_TECHNICIANS = ["ayu", "budi", "citra", "dewi"]
_CUSTOMERS = [("Eko", "eko@example.com"), ("Fitri", "fitri@example.com"), ("Gita", "g@example.com")]


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str
    os: str
    group: str


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    topic: str
    payload: dict[str, Any]


def device_script(device: Device, n: int, now: datetime) -> list[DeviceMessage]:
    """The life of one device, ``n`` choosing the variations (who, which failure)."""
    d = device.device_id
    session = f"s-{n:03d}"
    tech = _TECHNICIANS[n % len(_TECHNICIANS)]
    customer, email = _CUSTOMERS[n % len(_CUSTOMERS)]
    base = {"device_name": device.name, "os": device.os, "group": device.group}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("lifecycle", {"action": "added", **base}),
        ("status", {"state": "online", "reason": "boot"}),
        (
            "events",
            {"type": "telemetry.reported", "cpu_percent": 7 + 3 * (n % 9), "free_disk_gb": 41},
        ),
        (
            "events",
            {
                "type": "session.scheduled",
                "session_id": session,
                "technician": tech,
                "scheduled_for": (now + timedelta(minutes=5)).isoformat(),
            },
        ),
        ("events", {"type": "session.started", "session_id": session, "technician": tech}),
        (
            "events",
            {
                "type": "session.customer_joined",
                "session_id": session,
                "customer": customer,
                "customer_email": email,
            },
        ),
        (
            "events",
            {
                "type": "file_transfer.started",
                "session_id": session,
                "transfer_id": f"t-{n}-1",
                "file_name": "diagnostics.zip",
                "direction": "download",
            },
        ),
        (
            "events",
            {
                "type": "file_transfer.completed",
                "session_id": session,
                "transfer_id": f"t-{n}-1",
                "file_name": "diagnostics.zip",
                "size_bytes": 48_213 + 1000 * n,
                "direction": "download",
            },
        ),
    ]
    if n % 3 == 1:
        steps.append(
            (
                "events",
                {
                    "type": "file_transfer.failed",
                    "session_id": session,
                    "transfer_id": f"t-{n}-2",
                    "file_name": "driver-update.msi",
                    "direction": "upload",
                    "reason": "io",
                    "error": "disk full on the device",
                },
            )
        )
    steps.append(("events", {"type": "session.ended", "session_id": session, "duration_s": 754}))
    deployment = {"deployment_id": f"bd-{n}", "package": "agent-4.2.1", "target_count": 1}
    steps.append(("events", {"type": "bulk_deployment.started", **deployment}))
    if n % 3 == 2:
        steps.append(
            (
                "events",
                {"type": "bulk_deployment.failed", **deployment, "error": "checksum mismatch"},
            )
        )
    else:
        steps.append(
            ("events", {"type": "bulk_deployment.completed", **deployment, "succeeded": 1})
        )
    steps += [
        ("status", {"state": "offline", "reason": "shutdown"}),
        ("lifecycle", {"action": "deleted"}),
    ]
    return [
        DeviceMessage(
            f"devices/{d}/{kind}",
            {**payload, "id": f"{d}-m{seq}", "seq": seq, "occurred_at": now.isoformat()},
        )
        for seq, (kind, payload) in enumerate(steps, start=1)
    ]


_FLEET = [
    ("Front desk PC", "windows", "jakarta"),
    ("Warehouse kiosk", "linux", "surabaya"),
    ("Clinic laptop", "macos", "bandung"),
]


def messages() -> Iterator[DeviceMessage]:
    """An endless stream: rounds of three devices, their scripts interleaved."""
    run = uuid.uuid4().hex[:4]
    for round_no in itertools.count():
        scripts = []
        for i, (name, os_name, group) in enumerate(_FLEET):
            n = round_no * len(_FLEET) + i
            device = Device(f"dev-{run}-{n:03d}", name, os_name, group)
            scripts.append(device_script(device, n, datetime.now(UTC)))
        # Device i starts i steps late: the three lives overlap as on a real fleet.
        offset: list[list[DeviceMessage | None]] = [
            [*([None] * i), *s] for i, s in enumerate(scripts)
        ]
        for step in itertools.zip_longest(*offset):
            yield from (m for m in step if m is not None)


class Simulator:
    """Publishes the stream at ``rate`` messages per second until stopped."""

    def __init__(self, port: int, *, rate: float) -> None:
        self.port = port
        self.rate = rate
        self.sent = 0
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"demo-devices-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )

    async def run(self) -> None:
        async with connected(self._client, self.port, "devices"):
            for message in messages():
                # Each device message has its own time; it is stamped when sent.
                payload = {**message.payload, "occurred_at": datetime.now(UTC).isoformat()}
                self._client.publish(message.topic, json.dumps(payload), qos=1)
                self.sent += 1
                await asyncio.sleep(1 / self.rate)
