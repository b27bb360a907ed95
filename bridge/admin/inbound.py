"""The ``/api/inbound/…`` routes: accepted inbound webhooks and their way to the broker.

``GET /api/inbound`` lists the outbox newest first (filters ``status`` and
``inbound``, paged with ``cursor``); ``GET /api/inbound/{id}`` shows one
message with its payload; ``POST /api/inbound/{id}/replay`` makes a dead (or
published) message pending again, due now, its ``max_age`` counted afresh.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from bridge.admin.routes import BRIDGE_KEY
from bridge.core.events import format_timestamp
from bridge.errors import Conflict, NotFound, OperatorError, StoreError
from bridge.store.outbox import OutboxMessage, OutboxStatus

__all__ = ["add_inbound_routes", "inbound_message_json"]

_MAX_LIMIT = 500


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else format_timestamp(datetime.fromtimestamp(epoch, UTC))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def inbound_message_json(message: OutboxMessage, *, payload: bool = False) -> dict[str, Any]:
    """What the API shows of one outbox message (the payload only when asked)."""
    body: dict[str, Any] = {
        "id": message.id,
        "inbound": message.source,
        "topic": message.topic,
        "status": message.status.value,
        "attempts": message.attempts,
        "created_at": _iso(message.created_at),
        "next_attempt_at": _iso(message.next_attempt_at)
        if message.status is OutboxStatus.PENDING
        else None,
        "published_at": _iso(message.published_at),
        "expires_at": _iso(message.expires_at),
        "dead_reason": message.dead_reason,
        "last_error": message.last_error,
        "size": len(message.payload),
    }
    if payload:
        # Inbound bodies are JSON objects (checked on acceptance): UTF-8 text.
        body["payload"] = message.payload.decode("utf-8", errors="replace")
    return body


def _status(raw: str | None) -> OutboxStatus | None:
    if raw is None:
        return None
    try:
        return OutboxStatus(raw)
    except ValueError:
        choices = ", ".join(s.value for s in OutboxStatus)
        raise OperatorError(f"status: must be one of {choices}") from None


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return 50
    try:
        value = int(raw)
    except ValueError:
        raise OperatorError("limit: not an integer") from None
    if not 1 <= value <= _MAX_LIMIT:
        raise OperatorError(f"limit: must be between 1 and {_MAX_LIMIT}")
    return value


async def list_inbound(request: web.Request) -> web.Response:
    query = request.query
    cursor = query.get("cursor") or None
    try:
        page, next_cursor = await request.app[BRIDGE_KEY].store.list_outbox(
            status=_status(query.get("status") or None),
            source=query.get("inbound") or None,
            cursor=cursor,
            limit=_limit(request),
        )
    except StoreError as exc:
        # The cursor is opaque and the store's to decode: a bad one is the caller's error.
        if cursor is not None and "cursor" in str(exc):
            raise OperatorError("cursor: not a cursor this API gave out") from None
        raise
    return _json({"messages": [inbound_message_json(m) for m in page], "next_cursor": next_cursor})


async def get_inbound(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    message = await request.app[BRIDGE_KEY].store.get_outbox(message_id)
    if message is None:
        raise NotFound(f"no inbound message '{message_id}'")
    return _json(inbound_message_json(message, payload=True))


async def replay_inbound(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    message_id = request.match_info["message_id"]
    if not await bridge.store.requeue_outbox(message_id, now=time.time()):
        if await bridge.store.get_outbox(message_id) is None:
            raise NotFound(f"no inbound message '{message_id}'")
        raise Conflict(f"inbound message '{message_id}' is still pending")
    bridge.outbox.poke()
    message = await bridge.store.get_outbox(message_id)
    if message is None:  # purged in between
        raise NotFound(f"no inbound message '{message_id}'")
    return _json(inbound_message_json(message))


def add_inbound_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/inbound", list_inbound)
    r.add_get("/api/inbound/{message_id}", get_inbound)
    r.add_post("/api/inbound/{message_id}/replay", replay_inbound)
