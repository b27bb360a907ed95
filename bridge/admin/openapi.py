"""The OpenAPI 3 document of the admin API, written by hand.

A test checks that every route of the application is described here and
every path described here is routed, and a property-based test sends
requests generated from the parameters below, so the document cannot drift
from the code unnoticed.
"""

from __future__ import annotations

import copy
from typing import Any

from bridge.admin.accounts.openapi import annotate
from bridge.admin.schemas import OUTBOX_STATUS, SCHEMAS, STATUS, TIME

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/responses/Error"}
_JSON_ANY = {"application/json": {"schema": {"type": "object"}}}


def _ok(description: str, schema: str | None = None) -> dict[str, Any]:
    content = (
        {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
        if schema
        else _JSON_ANY
    )
    return {"description": description, "content": content}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_TIME = TIME
_STATUS = STATUS
_NAME = _path_param("name", "Subscription name")
_DELIVERY = _path_param("delivery_id", "Delivery id (dlv_…)")
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    errors: tuple[int, ...] = (401,),
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": ok, **{str(code): _ERROR for code in errors}},
    }
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    op["security"] = _SECURED if secured else []
    return op


def _on_one(summary: str, ok: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    """An operation on one resource named in the path: unknown names answer 404."""
    return _op(summary, ok, errors=(401, 404), parameters=[parameter])


_DASHBOARD = _op(
    "The dashboard page",
    {"description": "HTML", "content": {"text/html": {}}},
    errors=(),
    secured=False,
)
# The query parameters of a cursor-paged list.
_PAGE = [
    _query("cursor", "next_cursor of the previous page", {"type": "string"}),
    _query("limit", "Page size", {"type": "integer", "minimum": 1, "maximum": 500}),
]


def _again(summary: str, ok: dict[str, Any], parameter: dict[str, Any]) -> dict[str, Any]:
    """Sending one resource again: 404 for an unknown one, 409 for one still on its way."""
    return _op(summary, ok, errors=(401, 404, 409), parameters=[parameter])


# An operator's filter by account ("" for the objects of no account); an account's
# token is confined to its own whatever it sends.
_ACCOUNT_QUERY = _query("account", "Only this account's (operator)", {"type": "string"})
_DEVICE_ACCOUNT = _query(
    "account", "The device's account (operator; default none)", {"type": "string"}
)

_OUTBOX_STATUS = OUTBOX_STATUS
_MESSAGE = _path_param("message_id", "Inbound message id (inb_…)")


_PATHS: dict[str, Any] = {
    "/healthz": {"get": _op("The process is alive", _ok("alive"), errors=(), secured=False)},
    "/readyz": {
        "get": _op(
            "Broker connected and events can be committed: ingest's last commit went through"
            " and a probe commit through the events table succeeds; 503 with `reasons`"
            " naming each failing check",
            _ok("ready"),
            errors=(503,),
            secured=False,
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics",
            {"description": "text exposition format", "content": {"text/plain": {}}},
        )
    },
    "/": {"get": _DASHBOARD},
    "/dashboard": {"get": _DASHBOARD},
    "/dashboard/page.js": {
        "get": _op(
            "The script the dashboard and the settings page share",
            {"description": "JavaScript", "content": {"text/javascript": {}}},
            errors=(),
            secured=False,
        )
    },
    "/api/openapi.json": {"get": _op("This document", _ok("OpenAPI 3 document"))},
    "/api/subscriptions": {"get": _op("Subscriptions with their health", _ok("subscriptions"))},
    "/api/subscriptions/{name}/disable": {
        "post": _on_one(
            "Stop sending to a subscription (its deliveries are kept)",
            _ok("the subscription", "Subscription"),
            _NAME,
        )
    },
    "/api/subscriptions/{name}/enable": {
        "post": _on_one(
            "Resume sending to a subscription", _ok("the subscription", "Subscription"), _NAME
        )
    },
    "/api/subscriptions/{name}/flush": {
        "post": _on_one(
            "Make every pending delivery due now (but those in flight): {subscription, due_now}",
            _ok("how many were made due"),
            _NAME,
        )
    },
    "/api/subscriptions/{name}/test": {
        "post": _on_one(
            "Send a bridge.test event now and answer with the attempt",
            _ok("the attempt", "TestPing"),
            _NAME,
        )
    },
    "/api/events/{event_id}": {
        "get": _on_one(
            "One stored event (its envelope)",
            _ok("the event"),
            _path_param("event_id", "Event id (evt_…)"),
        )
    },
    "/api/deliveries": {
        "get": _op(
            "Deliveries, newest first, cursor-paged",
            _ok("one page", "DeliveryPage"),
            errors=(400, 401),
            parameters=[
                _query("subscription", "Only this subscription", {"type": "string"}),
                _query("status", "Only this status", _STATUS),
                _query("since", "Created at or after", _TIME),
                _query("until", "Created before", _TIME),
                _ACCOUNT_QUERY,
                *_PAGE,
            ],
        )
    },
    "/api/deliveries/{delivery_id}": {
        "get": _on_one(
            "One delivery with its event and attempt log", _ok("the delivery"), _DELIVERY
        )
    },
    "/api/deliveries/{delivery_id}/retry": {
        "post": _again(
            "Send a delivery now: a pending one becomes due (409 while its attempt is in"
            " flight), a dead or delivered one is requeued",
            _ok("the delivery", "Delivery"),
            _DELIVERY,
        )
    },
    "/api/replay": {
        "post": _op(
            "Deliver stored events again (same event id unless as_new)",
            _ok("the new deliveries"),
            errors=(400, 401, 404),
            body="Replay",
        )
    },
    "/api/devices": {
        "get": _op(
            "The device directory: every device the bridge has had a message from (until"
            " forgotten), by device id, cursor-paged",
            _ok("one page", "DevicePage"),
            errors=(400, 401),
            parameters=[
                _query(
                    "state",
                    "Only devices in this presence state",
                    {"type": "string", "enum": ["online", "offline"]},
                ),
                _query(
                    "prefix",
                    "Only device ids starting with this (matched literally)",
                    {"type": "string", "maxLength": 256},
                ),
                _ACCOUNT_QUERY,
                *_PAGE,
            ],
        )
    },
    "/api/devices/{device_id}": {
        "get": _op(
            "One device with its recent events and their deliveries",
            _ok("the device", "DeviceDetail"),
            errors=(400, 401, 404),
            parameters=[
                _path_param("device_id", "Device id"),
                _DEVICE_ACCOUNT,
                _query(
                    "events",
                    "How many recent events (default 20)",
                    {"type": "integer", "minimum": 1, "maximum": 200},
                ),
            ],
        ),
        "delete": _op(
            "Forget a device: out of the directory, its presence dropped, its events kept;"
            " its next message brings it back as a device never seen",
            _ok("the forgotten device id"),
            errors=(401, 404),
            parameters=[_path_param("device_id", "Device id"), _DEVICE_ACCOUNT],
        ),
    },
    "/api/inbound": {
        "get": _op(
            "Accepted inbound webhooks (the MQTT outbox), newest first, cursor-paged",
            _ok("one page", "InboundPage"),
            errors=(400, 401),
            parameters=[
                _query("status", "Only this status", _OUTBOX_STATUS),
                _query("inbound", "Only this inbound entry", {"type": "string"}),
                *_PAGE,
            ],
        )
    },
    "/api/inbound/{message_id}": {
        "get": _on_one(
            "One inbound message with its payload", _ok("the message", "InboundMessage"), _MESSAGE
        )
    },
    "/api/inbound/{message_id}/replay": {
        "post": _again(
            "Publish a dead or published inbound message again, due now, its max_age"
            " counted from now",
            _ok("the message", "InboundMessage"),
            _MESSAGE,
        )
    },
    "/api/rejected": {
        "get": _op(
            "Messages that could not become events, newest first, with reasons",
            _ok("rejected messages"),
            errors=(400, 401),
            parameters=[
                _query("limit", "How many", {"type": "integer", "minimum": 1, "maximum": 500})
            ],
        )
    },
    "/api/reload": {
        "post": _op(
            "Re-read the configuration file and apply all of it, or nothing: 400 with the"
            " problems if it is invalid, 409 naming the parts that change only on restart",
            _ok("what changed"),
            errors=(400, 401, 409),
        )
    },
    "/api/stats": {"get": _op("Totals for the dashboard's throughput chart", _ok("totals"))},
    "/api/freshness": {
        "get": _op(
            "Per subscription: p50 and p99 seconds from receipt to the receiver's 2xx over the"
            " last window (recent), and since start",
            _ok("freshness by subscription"),
        )
    },
}


def openapi_document() -> dict[str, Any]:
    return annotate(copy.deepcopy(_document()))


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HookBridge admin API",
            "version": "1",
            "description": (
                "Operate a running HookBridge: health, deliveries, devices, replay, test pings."
            ),
        },
        "paths": _PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {
                "Error": {
                    "description": "An error, in words",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
        },
    }
