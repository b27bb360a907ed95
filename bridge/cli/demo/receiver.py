"""The verifying webhook receiver: one readable line per event, signature checked first.

It is what a subscriber writes: an aiohttp endpoint that checks the Standard
Webhooks headers with :func:`bridge.core.signing.verify` before it trusts the
body, answers 2xx, and deduplicates on ``webhook-id``. The demo runs it on
127.0.0.1; ``hookbridge receive`` runs it on a port of the user's choosing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
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
    """Verifies and prints webhooks: the demo's receiver, and ``hookbridge receive``.

    ``secrets`` are the ``whsec_`` secrets any of which may sign (several during a key
    rotation). ``limit`` stops counting and printing after that many events (the
    demo's ``--events``): what arrives later is acknowledged and not shown, so the
    screen and the summary agree. ``answer`` (``hookbridge receive --answer``) is the
    JSON body every verified request gets, for a pipe subscription; else 204.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        printer: Callable[[str], None] = print,
        limit: int | None = None,
        answer: bytes | None = None,
    ) -> None:
        self._secrets = [secret] if isinstance(secret, str) else list(secret)
        self._print = printer
        self._limit = limit
        self._answer_body = answer
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.verified = 0
        self.answered = 0  # of the verified: requests answered with a body (pipe)
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

    async def _verified(self, request: web.Request) -> list[dict[str, Any]] | None:
        """The envelopes of a request whose signature verifies (a batch carries several);
        None (counted, and said) otherwise."""
        body = await request.read()
        try:
            verify(self._secrets, request.headers, body, now=time.time())
            parsed = json.loads(body)
        except (SignatureError, ValueError) as exc:
            self.refused += 1
            self._print(f"REFUSED  {request.headers.get('webhook-id', '?')}: {exc}")
            self.changed.set()
            return None
        items = parsed if isinstance(parsed, list) else [parsed]
        return [item for item in items if isinstance(item, dict)]

    def _counts(self, request: web.Request) -> bool:
        """A new webhook, within the limit: count it. A retry of one already shown, or
        one past the limit, is acknowledged and not shown."""
        # By path too: one event sent to two subscriptions (the demo's two) is two webhooks.
        key = f"{request.path} {request.headers.get('webhook-id', '')}"
        if key in self._seen or (self._limit is not None and self.verified >= self._limit):
            return False
        self._seen.add(key)
        return True

    def _show(self, envelopes: list[dict[str, Any]], note: str) -> None:
        self.verified += 1
        for envelope in envelopes:
            self.types[str(envelope.get("type"))] += 1
            self._print(f"{describe(envelope)}  [signature ok{note}]")
        self.changed.set()

    async def _answer(self, request: web.Request) -> web.Response:
        """The demo's pipe receiver: it answers with a command for the device."""
        envelopes = await self._verified(request)
        if envelopes is None:
            return web.Response(status=401, text="bad signature")
        device = (envelopes[0].get("data") or {}).get("device_id", "-") if envelopes else "-"
        if self._counts(request):
            self.answered += 1
            self._show(envelopes, ", answering: sync")
        return web.json_response({"command": "sync", "device_id": device})

    async def _handle(self, request: web.Request) -> web.Response:
        envelopes = await self._verified(request)
        if envelopes is None:
            return web.Response(status=401, text="bad signature")
        answer = self._answer_body
        if self._counts(request):
            if answer is not None:
                self.answered += 1
            self._show(envelopes, "" if answer is None else ", answered")
        if answer is not None:
            return web.Response(status=200, body=answer, content_type="application/json")
        return web.Response(status=204)

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, any_path: bool = False
    ) -> None:
        """Listen; ``any_path``: every POST is a webhook (``hookbridge receive``), else
        the demo's two paths."""
        app = web.Application()
        if any_path:
            app.router.add_post("/{tail:.*}", self._handle)
        else:
            app.router.add_post("/webhooks/hookbridge", self._handle)
            app.router.add_post("/webhooks/commands", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # aiohttp does not expose the port it bound when asked for port 0.
        sockets = getattr(site._server, "sockets", None)
        if not sockets:
            raise RuntimeError("the receiver did not bind")
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
