"""The demo's webhook receiver: verifies every signature and prints one readable line per event.

It is what a subscriber writes: an aiohttp endpoint on 127.0.0.1 that checks
the Standard Webhooks headers with :func:`bridge.signing.verify` before it
trusts the body, answers 2xx, and deduplicates on ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bridge.core.signing import verify
from bridge.errors import SignatureError

__all__ = ["DemoReceiver", "describe"]

# The fields worth a glance, per family of types, in the order shown.
_KEY_FIELDS = {
    "device": ("device_name", "os", "group", "reason"),
    "session": ("session_id", "technician", "customer", "scheduled_for", "duration_s"),
    "file_transfer": ("transfer_id", "file_name", "size_bytes", "direction", "error"),
    "bulk_deployment": ("deployment_id", "package", "succeeded", "error"),
    "telemetry": ("cpu_percent", "free_disk_gb", "value"),
    "bridge": ("message", "subscription", "reason"),
}


def describe(envelope: dict[str, Any]) -> str:
    """One line for a verified event: time, type, device, key fields."""
    data = envelope.get("data") or {}
    family = str(envelope.get("type", "")).split(".", 1)[0]
    fields = " ".join(
        f"{name}={data[name]}" for name in _KEY_FIELDS.get(family, ()) if data.get(name) is not None
    )
    stamp = str(envelope.get("timestamp", ""))
    try:
        shown = datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        shown = stamp
    seq = f"#{data['seq']}" if "seq" in data else ""
    device = f"{data.get('device_id', '-')}{seq}"
    return f"{shown}  {envelope.get('type', '?'):<26} {device:<18} {fields}"


class DemoReceiver:
    def __init__(self, secret: str, *, printer: Callable[[str], None] = print) -> None:
        self._secret = secret
        self._print = printer
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.verified = 0
        self.refused = 0
        self.types: Counter[str] = Counter()
        self._seen: set[str] = set()
        self.changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/hookbridge"

    @property
    def pipe_url(self) -> str:
        """Where the pipe subscription posts: the answer goes back to the device."""
        return f"http://127.0.0.1:{self.port}/webhooks/commands"

    async def _verified(self, request: web.Request) -> dict[str, Any] | None:
        """The envelope of a request whose signature verifies; None (counted) otherwise."""
        body = await request.read()
        try:
            verify([self._secret], request.headers, body, now=time.time())
        except SignatureError as exc:
            self.refused += 1
            self._print(f"REFUSED  {request.headers.get('webhook-id', '?')}: {exc}")
            self.changed.set()
            return None
        envelope: dict[str, Any] = json.loads(body)
        return envelope

    async def _answer(self, request: web.Request) -> web.Response:
        envelope = await self._verified(request)
        if envelope is None:
            return web.Response(status=401, text="bad signature")
        device = (envelope.get("data") or {}).get("device_id", "-")
        self._print(f"{describe(envelope)}  [signature ok, answering: sync]")
        return web.json_response({"command": "sync", "device_id": device})

    async def _handle(self, request: web.Request) -> web.Response:
        envelope = await self._verified(request)
        if envelope is None:
            return web.Response(status=401, text="bad signature")
        event_id = request.headers.get("webhook-id", "")
        if event_id in self._seen:  # a retry of what we already have: ack, do not count
            return web.Response(status=204)
        self._seen.add(event_id)
        self.verified += 1
        self.types[str(envelope.get("type"))] += 1
        self._print(f"{describe(envelope)}  [signature ok]")
        self.changed.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/hookbridge", self._handle)
        app.router.add_post("/webhooks/commands", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        # aiohttp does not expose the port it bound when asked for port 0.
        sockets = getattr(site._server, "sockets", None)
        if not sockets:
            raise RuntimeError("the demo receiver did not bind")
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
