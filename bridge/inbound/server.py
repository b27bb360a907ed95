"""Inbound webhooks: signed HTTP requests turned into MQTT messages, under topic ACLs.

Each ``inbound:`` entry is one POST path. A request is accepted only when
all of this holds, checked in this order (nothing is published otherwise):

1. the body is at most ``max_body`` bytes (``Content-Length`` checked first,
   then the read is capped) — else **413**;
2. the signature verifies: Standard Webhooks (``webhook-id``,
   ``webhook-timestamp`` within 5 minutes of now, ``webhook-signature``) or,
   with ``signature: github``, ``x-hub-signature-256`` — else **401**;
3. the body is a JSON object — else **400**;
4. the topic template renders from ``{body.…}`` with safe values (non-empty,
   no ``/``, ``+``, ``#``) — else **400**;
5. the topic matches one of ``allow_topics`` — else **403**;
6. the request was not accepted before — else **409**. What identifies it
   is something the signature covers: the ``webhook-id`` (held 10 minutes,
   as long as its timestamp is acceptable) or, for GitHub-style requests,
   which carry no timestamp, the signature itself, a digest of the body
   (held 24 hours). ``x-github-delivery`` is not signed: a replayer could
   drop or change it, so it is not what replay refusal keys on. The ids are
   kept in the store so every instance sharing it agrees.

Then the message is committed to the store's outbox, in the same
transaction as its replay id, and the answer is **202** ``{"id": "inb_…",
"topic": "…"}``; when the store cannot commit, nothing is accepted and the
answer is **503** (the sender retries, and its retry is not a replay). The
outbox publisher (:mod:`bridge.inbound.outbox`) then publishes the raw body
with QoS 1 (MQTT 5 correlation data: the id of the 202) until the broker
acknowledges it, across broker outages and bridge restarts, or until the
entry's ``max_age`` passes.

The routes are served by the admin API server, or only by a separate
listener on ``api.inbound_listen`` when that is set (:class:`InboundServer`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web

from bridge.config import InboundSettings, Settings
from bridge.core.settings.models import INBOUND_RESERVED_PATHS
from bridge.core.settings.templates import render_topic, topic_matches
from bridge.core.signing import verify, verify_hub_signature
from bridge.errors import (
    BridgeError,
    ConfigError,
    RequestRefused,
    SignatureError,
    StoreError,
    TemplateError,
)
from bridge.observe.logs import get_logger
from bridge.store.base import Store
from bridge.store.outbox import OutboxMessage, ReplayNote

__all__ = [
    "GITHUB_REPLAY_WINDOW",
    "REPLAY_WINDOW",
    "InboundServer",
    "ReplayKey",
    "inbound_routes",
    "replay_key",
]

log = get_logger("hookbridge.inbound")

TOLERANCE = 300.0
REPLAY_WINDOW = 2 * TOLERANCE
"""How long a ``webhook-id`` is remembered: a timestamp may be up to 5 minutes either side."""
GITHUB_REPLAY_WINDOW = 24 * 3600.0
"""How long a GitHub-style signature is remembered: the request has no timestamp to expire."""

_CHUNK = 64 * 1024


class _Outbox(Protocol):
    def accepted(self, message: OutboxMessage) -> None: ...


class InboundHost(Protocol):
    """What inbound webhooks need of the running bridge."""

    settings: Settings
    store: Store

    @property
    def outbox(self) -> _Outbox: ...


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise RequestRefused(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)


@dataclass(frozen=True, slots=True)
class ReplayKey:
    """What identifies one accepted request, and how long it is held."""

    value: str
    window: float


def replay_key(entry: InboundSettings, headers: Mapping[str, str]) -> ReplayKey | None:
    """The signed identity of a verified request; None when it has none to key on."""
    if entry.signature == "github":
        # The signature is an HMAC of the body: a replay carries the same one.
        signature = headers.get("x-hub-signature-256", "").strip().lower()
        return ReplayKey(f"sig:{signature}", GITHUB_REPLAY_WINDOW) if signature else None
    msg_id = headers.get("webhook-id", "")
    return ReplayKey(msg_id, REPLAY_WINDOW) if msg_id else None


def _check_signature(entry: InboundSettings, headers: Mapping[str, str], body: bytes) -> None:
    secret = entry.secret.get_secret_value()
    try:
        if entry.signature == "github":
            verify_hub_signature(secret, headers.get("x-hub-signature-256"), body)
        else:
            verify([secret], headers, body, now=time.time(), tolerance=TOLERANCE)
    except SignatureError as exc:
        raise RequestRefused(401, str(exc)) from None


def _topic_for(entry: InboundSettings, body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRefused(400, "the body is not JSON") from None
    if not isinstance(document, dict):
        raise RequestRefused(400, "the body is not a JSON object")
    try:
        topic = render_topic(entry.topic, {"body": document})
    except TemplateError as exc:
        raise RequestRefused(400, f"topic: {exc}") from None
    if not any(topic_matches(allowed, topic) for allowed in entry.allow_topics):
        raise RequestRefused(403, f"topic {topic!r} is not in allow_topics")
    return topic


class _InboundHandler:
    def __init__(self, host: InboundHost, entry: InboundSettings) -> None:
        self._host = host
        self._entry = entry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        entry = self._entry
        try:
            body = await _read_capped(request, entry.max_body)
            headers = {k.lower(): v for k, v in request.headers.items()}
            _check_signature(entry, headers, body)
            topic = _topic_for(entry, body)
            message = OutboxMessage(
                id=f"inb_{uuid.uuid4().hex}",
                source=entry.name,
                topic=topic,
                payload=body,
                created_at=time.time(),
                max_age=entry.max_age,
            )
            await self._accept(message, replay_key(entry, headers))
        except RequestRefused as refused:
            log.info("inbound webhook refused", inbound=entry.name, status=refused.status)
            return web.json_response({"error": refused.reason}, status=refused.status)
        self._host.outbox.accepted(message)
        log.info("inbound webhook accepted", inbound=entry.name, topic=topic, id=message.id)
        return web.json_response({"id": message.id, "topic": topic}, status=202)

    async def _accept(self, message: OutboxMessage, key: ReplayKey | None) -> None:
        """Commit the message with its replay id: both or neither."""
        now = message.created_at
        replay = None if key is None else ReplayNote(key.value, now + key.window)
        try:
            fresh = await self._host.store.accept_inbound(message, replay, now=now)
        except StoreError as exc:
            log.warning("inbound webhook not accepted", inbound=self._entry.name, error=str(exc))
            raise RequestRefused(503, "the store is unavailable; try again later") from exc
        if not fresh:
            raise RequestRefused(409, "this request was already received (a replay)")


def inbound_routes(host: InboundHost) -> list[web.RouteDef]:
    """One POST route per ``inbound:`` entry; a path the admin API uses is a ConfigError."""
    routes: list[web.RouteDef] = []
    for entry in host.settings.inbound:
        if any(entry.path == p or entry.path.startswith(p + "/") for p in INBOUND_RESERVED_PATHS):
            raise ConfigError(f"inbound '{entry.name}': path {entry.path} is reserved")
        # aiohttp wants a coroutine function, not a callable object
        routes.append(web.post(entry.path, _InboundHandler(host, entry).handle))
    return routes


class InboundServer:
    """The inbound paths alone on ``api.inbound_listen`` (a public listener)."""

    def __init__(self, host: InboundHost) -> None:
        self._host = host
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        listen = self._host.settings.api.inbound_listen
        if listen is None or not self._host.settings.inbound:
            return
        host, _, port = listen.rpartition(":")
        # The largest body any entry accepts; each handler enforces its own limit.
        limit = max(entry.max_body for entry in self._host.settings.inbound)
        app = web.Application(client_max_size=limit + 1)
        app.router.add_routes(inbound_routes(self._host))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise BridgeError(
                f"inbound webhooks cannot listen on {listen} (api.inbound_listen): "
                f"{exc.strerror}; set api.inbound_listen to a free address"
            ) from exc
        self._runner = runner
        sockets: Sequence[object] = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else int(port)  # type: ignore[attr-defined]
        log.info("inbound webhooks listening", listen=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
