"""The ``/api/…`` routes of the admin server: read and act on a running bridge.

Handlers check their input (query and JSON body) explicitly, hand the work to
:class:`bridge.operations.Operations` or the store, and answer JSON. Errors
are raised as :mod:`bridge.errors` types and turned into ``{"error": …}``
answers by the middleware in :mod:`bridge.api`. No answer carries a secret:
a subscription shows ``secret: "set"`` and the names of its headers only.

A request made with an account's token is confined to that account
(:func:`bridge.admin.accounts.principals.scope`): every read filters on it, and
another account's object answers 404 as if it did not exist.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from bridge.admin.accounts.principals import scope
from bridge.admin.operations import ReplayRequest
from bridge.admin.params import (
    cursor_errors,
    enum_param,
    int_param,
    iso,
    json_response,
    page_limit,
    parse_time,
    progress_json,
)
from bridge.config import Subscription
from bridge.core.presence import Presence
from bridge.errors import NotFound, OperatorError
from bridge.observe.logs import display_url
from bridge.store.rows import (
    AttemptRecord,
    Delivery,
    DeliveryStatus,
    DeviceDelivery,
    DeviceEvent,
    DeviceSummary,
    EventSummary,
    Rejection,
)

if TYPE_CHECKING:
    from bridge.admin.operations import ServedBridge

__all__ = ["BRIDGE_KEY", "add_api_routes", "parse_time", "refresh_gauges", "subscription_json"]

BRIDGE_KEY: web.AppKey[ServedBridge] = web.AppKey("bridge")

_MAX_DEVICE_EVENTS = 200
_MAX_PREFIX = 256  # the longest device id
_EXCERPT = 512


def _bridge(request: web.Request) -> ServedBridge:
    return request.app[BRIDGE_KEY]


# -- shapes -----------------------------------------------------------------------------


def delivery_json(delivery: Delivery, batch_id: str | None = None) -> dict[str, Any]:
    """A delivery for the API; ``batch_id``: the stored batch it was last sent in."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event.type,
        "subscription": delivery.subscription,
        "account": delivery.account,
        **progress_json(delivery),
        "dead_reason": delivery.dead_reason,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "batch_id": batch_id,
    }


def attempt_json(record: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt": record.attempt,
        "started_at": iso(record.started_at),
        "latency_ms": round(record.latency_ms, 2),
        "status_code": record.status_code,
        "error": record.error,
        "response_excerpt": record.response_excerpt,
    }


def rejection_json(rejection: Rejection) -> dict[str, Any]:
    return {
        "received_at": iso(rejection.received_at),
        "topic": rejection.topic,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "account": rejection.account,
        "payload_excerpt": rejection.payload[:_EXCERPT].decode("utf-8", "replace"),
    }


def event_summary_json(event: EventSummary) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "timestamp": iso(event.timestamp),
        "received_at": iso(event.received_at),
    }


def device_json(device: DeviceSummary) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "account": device.account,
        "state": device.state.value if device.state is not None else None,
        "changed_at": iso(device.changed_at),
        "reason": device.reason,
        "last_seen": iso(device.last_seen),
        "last_event": event_summary_json(device.last_event) if device.last_event else None,
    }


def device_delivery_json(delivery: DeviceDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "subscription": delivery.subscription,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "dead_reason": delivery.dead_reason,
        "last_status_code": delivery.last_status_code,
    }


def device_event_json(item: DeviceEvent) -> dict[str, Any]:
    body = event_summary_json(item.event)
    body["deliveries"] = [device_delivery_json(d) for d in item.deliveries]
    return body


async def subscription_json(bridge: ServedBridge, sub: Subscription) -> dict[str, Any]:
    lane = bridge.dispatcher.lanes.get(sub.name)
    state = lane.state if lane is not None else None
    circuit = bridge.metrics.registry.get_sample_value(
        "hookbridge_circuit_open", {"subscription": sub.name}
    )
    return {
        "name": sub.name,
        "url": display_url(sub.url),
        "events": list(sub.events),
        "filter": sub.filter,
        "format": sub.format,
        "mode": sub.mode,
        # Whether it sends now: the configuration's switch and the operator's (or the
        # bridge's own) disabling both count, so it never contradicts health.disabled.
        "enabled": sub.enabled and not (state is not None and state.disabled),
        "secret": "set" if sub.secrets else None,
        "headers": sorted(sub.headers),
        "max_in_flight": sub.max_in_flight,
        "rate_limit": str(sub.rate_limit) if sub.rate_limit is not None else None,
        "health": {
            "disabled": bool(state and state.disabled) or not sub.enabled,
            "disabled_reason": state.disabled_reason if state else None,
            "last_success": iso(state.last_success) if state else None,
            "last_failure": iso(state.last_failure) if state else None,
            "failing_since": iso(state.failing_since) if state else None,
            "queue_depth": await bridge.store.queue_depth(sub.name),
            "in_flight": lane.in_flight if lane is not None else 0,
            "circuit_open": bool(circuit),
        },
    }


async def refresh_gauges(bridge: ServedBridge) -> None:
    """Queue depth and the oldest pending age are the store's to know: read them when
    someone looks (scrape time), on the store's read connections."""
    names = [sub.name for sub in bridge.settings.subscriptions]
    for name in names:
        depth = await bridge.store.queue_depth(name)
        bridge.metrics.queue_depth.labels(name).set(depth)
    oldest = await bridge.store.oldest_pending(names)
    now = time.time()
    for name in names:
        created = oldest.get(name)
        age = 0.0 if created is None else max(0.0, now - created)
        bridge.metrics.oldest_pending_age.labels(name).set(age)


# -- subscriptions (listed, made and changed in bridge.admin.accounts.subscriptions) --------


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    bridge = _bridge(request)
    name = request.match_info["name"]
    sub = bridge.operations.subscription(name, scope(request))
    reason = "disabled by an operator" if disabled else None
    if not await bridge.dispatcher.set_disabled(name, disabled, reason):
        raise NotFound(f"no subscription named '{name}'")
    return json_response(await subscription_json(bridge, sub))


async def disable_subscription(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


async def enable_subscription(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


async def flush_subscription(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    count = await _bridge(request).operations.flush(name, scope(request))
    return json_response({"subscription": name, "due_now": count})


async def test_subscription(request: web.Request) -> web.Response:
    ping = await _bridge(request).operations.test_ping(request.match_info["name"], scope(request))
    return json_response(
        {
            "delivery_id": ping.delivery_id,
            "event_id": ping.event_id,
            "outcome": ping.outcome,
            "status_code": ping.status_code,
            "latency_ms": round(ping.latency_ms, 2),
            "error": ping.error,
            "response_excerpt": ping.response_excerpt,
        }
    )


# -- events and deliveries ----------------------------------------------------------------


async def get_event(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    event = await _bridge(request).store.get_event(event_id)
    confined = scope(request)
    if event is None or (confined is not None and event.account != confined):
        raise NotFound(f"no event '{event_id}'")
    return json_response(event.to_dict())


async def list_deliveries(request: web.Request) -> web.Response:
    query = request.query
    since = query.get("since")
    until = query.get("until")
    cursor = query.get("cursor") or None
    with cursor_errors(cursor):
        page, next_cursor = await _bridge(request).store.list_deliveries(
            subscription=query.get("subscription") or None,
            status=enum_param(query.get("status") or None, DeliveryStatus, "status"),
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            cursor=cursor,
            limit=page_limit(request),
            account=_account_filter(request),
        )
    batches = await _bridge(request).store.batches_of([d.id for d in page]) if page else {}
    deliveries = [delivery_json(d, batches.get(d.id)) for d in page]
    return json_response({"deliveries": deliveries, "next_cursor": next_cursor})


def _account_filter(request: web.Request) -> str | None:
    """The account a list is confined to: the token's; for the operator, the ``account``
    query parameter when given ("" for the objects of no account), else every one."""
    confined = scope(request)
    if confined is not None:
        return confined
    return request.query.get("account")


def _device_account(request: web.Request) -> str:
    """The account of the device a path names: the token's; for the operator, the
    ``account`` query parameter ("" or absent: a device of no account)."""
    confined = scope(request)
    return confined if confined is not None else request.query.get("account", "")


# -- devices --------------------------------------------------------------------------------


async def list_devices(request: web.Request) -> web.Response:
    query = request.query
    prefix = query.get("prefix") or None
    if prefix is not None and len(prefix) > _MAX_PREFIX:
        raise OperatorError(f"prefix: at most {_MAX_PREFIX} characters")
    cursor = query.get("cursor") or None
    with cursor_errors(cursor):
        page, next_cursor = await _bridge(request).store.list_devices(
            state=enum_param(query.get("state") or None, Presence, "state"),
            prefix=prefix,
            cursor=cursor,
            limit=page_limit(request),
            account=_account_filter(request),
        )
    return json_response({"devices": [device_json(d) for d in page], "next_cursor": next_cursor})


async def get_device(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    events = int_param(request, "events", 20, low=1, high=_MAX_DEVICE_EVENTS)
    detail = await _bridge(request).store.get_device(
        device_id, events=events, account=_device_account(request), deliveries_of=scope(request)
    )
    if detail is None:
        raise NotFound(f"no device '{device_id}'")
    body = device_json(detail.device)
    body["events"] = [device_event_json(e) for e in detail.events]
    return json_response(body)


async def forget_device(request: web.Request) -> web.Response:
    """Drop a device from the directory (and its presence); its events stay."""
    device_id = request.match_info["device_id"]
    if not await _bridge(request).store.forget_device(device_id, _device_account(request)):
        raise NotFound(f"no device '{device_id}'")
    return json_response({"device_id": device_id, "forgotten": True})


async def get_delivery(request: web.Request) -> web.Response:
    store = _bridge(request).store
    delivery_id = request.match_info["delivery_id"]
    delivery = await store.get_delivery(delivery_id)
    confined = scope(request)
    if delivery is None or (confined is not None and delivery.account != confined):
        raise NotFound(f"no delivery '{delivery_id}'")
    batches = await store.batches_of([delivery_id])
    body = delivery_json(delivery, batches.get(delivery_id))
    body["event"] = delivery.event.to_dict()
    body["attempt_log"] = [attempt_json(a) for a in await store.attempts(delivery_id)]
    return json_response(body)


async def retry_delivery(request: web.Request) -> web.Response:
    delivery = await _bridge(request).operations.retry(
        request.match_info["delivery_id"], scope(request)
    )
    return json_response(delivery_json(delivery))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise OperatorError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OperatorError("the body must be a JSON object")
    return body


def _replay_request(body: dict[str, Any]) -> ReplayRequest:
    known = {"event_ids", "subscription", "since", "until", "status", "to", "as_new", "limit"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise OperatorError(f"unknown field: {', '.join(unknown)}")
    event_ids = body.get("event_ids") or []
    if not isinstance(event_ids, list) or not all(isinstance(i, str) for i in event_ids):
        raise OperatorError("event_ids: must be a list of event ids")
    if len(event_ids) > 1000:
        raise OperatorError("event_ids: at most 1000 per request")
    for name in ("subscription", "to", "since", "until", "status"):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            raise OperatorError(f"{name}: must be a string")
    since, until = body.get("since"), body.get("until")
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise OperatorError("limit: must be an integer between 1 and 100000")
    if not isinstance(body.get("as_new", False), bool):
        raise OperatorError("as_new: must be true or false")
    subscription = body.get("subscription")
    if bool(event_ids) == (subscription is not None):
        raise OperatorError("give either event_ids or a subscription (with since/until)")
    return ReplayRequest(
        event_ids=event_ids,
        subscription=str(subscription) if subscription is not None else None,
        since=parse_time(str(since), "since") if since is not None else None,
        until=parse_time(str(until), "until") if until is not None else None,
        status=enum_param(body.get("status"), DeliveryStatus, "status"),
        target=str(body["to"]) if body.get("to") is not None else None,
        as_new=bool(body.get("as_new", False)),
        limit=limit,
    )


async def replay(request: web.Request) -> web.Response:
    replayed = _replay_request(await _body(request))
    created = await _bridge(request).operations.replay(replayed, scope(request))
    return json_response({"count": len(created), "deliveries": [delivery_json(d) for d in created]})


async def list_rejected(request: web.Request) -> web.Response:
    limit = page_limit(request)
    rejected = await _bridge(request).store.list_rejected(limit=limit)
    return json_response({"rejected": [rejection_json(r) for r in rejected]})


async def reload(request: web.Request) -> web.Response:
    result = await _bridge(request).operations.reload()
    body = {
        "applied": result.applied,
        "problems": result.problems,
        "added": result.added,
        "removed": result.removed,
        "changed": result.changed,
        "restart_needed": result.restart_needed,
        "sections": result.sections,
    }
    if result.applied:
        return json_response(body)
    body["error"] = "the configuration was not reloaded: " + "; ".join(result.problems)
    # 409: the file is valid, but the running bridge cannot adopt all of it.
    return json_response(body, status=409 if result.restart_needed else 400)


async def stats(request: web.Request) -> web.Response:
    """Totals for the dashboard's throughput chart (it computes rates from deltas)."""
    bridge = _bridge(request)
    outcomes: dict[str, float] = {}
    for metric in bridge.metrics.deliveries.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels["outcome"]
                outcomes[key] = outcomes.get(key, 0.0) + sample.value
    received = sum(
        s.value
        for m in bridge.metrics.events_received.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )
    return json_response(
        {
            "time": time.time(),
            "events_received": received,
            "attempts": outcomes,
            "counts": await bridge.store.counts(),
            "broker_connected": bridge.ingest.connected,
        }
    )


def add_api_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/subscriptions/{name}/disable", disable_subscription)
    r.add_post("/api/subscriptions/{name}/enable", enable_subscription)
    r.add_post("/api/subscriptions/{name}/test", test_subscription)
    r.add_post("/api/subscriptions/{name}/flush", flush_subscription)
    r.add_get("/api/events/{event_id}", get_event)
    r.add_get("/api/deliveries", list_deliveries)
    r.add_get("/api/deliveries/{delivery_id}", get_delivery)
    r.add_post("/api/deliveries/{delivery_id}/retry", retry_delivery)
    r.add_post("/api/replay", replay)
    r.add_get("/api/devices", list_devices)
    r.add_get("/api/devices/{device_id}", get_device)
    r.add_delete("/api/devices/{device_id}", forget_device)
    r.add_get("/api/rejected", list_rejected)
    r.add_post("/api/reload", reload)
    r.add_get("/api/stats", stats)
