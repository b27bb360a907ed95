"""The ``/api/inbound/…`` routes: the MQTT outbox (accepted inbound webhooks and pipe
replies) and its way to the broker.

A pipe reply shows as ``kind: reply`` with its subscription as ``inbound``, the
delivery it answers and its correlation data (base64).

``GET /api/inbound`` lists the outbox newest first (filters ``status`` and
``inbound``, paged with ``cursor``); ``GET /api/inbound/{id}`` shows one
message with its payload; ``POST /api/inbound/{id}/replay`` makes a dead (or
published) message pending again, due now, its ``max_age`` counted afresh.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from bridge.admin.params import (
    cursor_errors,
    enum_param,
    iso,
    json_response,
    page_limit,
    progress_json,
)
from bridge.admin.routes import BRIDGE_KEY
from bridge.errors import Conflict, NotFound
from bridge.store.outbox import OutboxMessage, OutboxStatus

__all__ = ["add_inbound_routes", "inbound_message_json"]


def inbound_message_json(message: OutboxMessage, *, payload: bool = False) -> dict[str, Any]:
    """What the API shows of one outbox message (the payload only when asked)."""
    body: dict[str, Any] = {
        "id": message.id,
        "inbound": message.source,
        "topic": message.topic,
        **progress_json(message),
        "published_at": iso(message.published_at),
        "expires_at": iso(message.expires_at),
        "dead_reason": message.dead_reason,
        "last_error": message.last_error,
        "size": len(message.payload),
        "kind": message.kind.value,
        "delivery_id": message.delivery_id,
        "correlation": None
        if message.correlation is None
        else base64.b64encode(message.correlation).decode("ascii"),
        "content_type": message.content_type,
    }
    if payload:
        # Inbound bodies are JSON objects (checked on acceptance): UTF-8 text; a reply
        # is the receiver's answer as it came, shown as text.
        body["payload"] = message.payload.decode("utf-8", errors="replace")
    return body


async def list_inbound(request: web.Request) -> web.Response:
    query = request.query
    cursor = query.get("cursor") or None
    with cursor_errors(cursor):
        page, next_cursor = await request.app[BRIDGE_KEY].store.list_outbox(
            status=enum_param(query.get("status") or None, OutboxStatus, "status"),
            source=query.get("inbound") or None,
            cursor=cursor,
            limit=page_limit(request),
        )
    return json_response(
        {"messages": [inbound_message_json(m) for m in page], "next_cursor": next_cursor}
    )


async def get_inbound(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    message = await request.app[BRIDGE_KEY].store.get_outbox(message_id)
    if message is None:
        raise NotFound(f"no inbound message '{message_id}'")
    return json_response(inbound_message_json(message, payload=True))


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
    return json_response(inbound_message_json(message))


def add_inbound_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/inbound", list_inbound)
    r.add_get("/api/inbound/{message_id}", get_inbound)
    r.add_post("/api/inbound/{message_id}/replay", replay_inbound)
