"""The shapes of the admin API's answers, for its OpenAPI document (:mod:`bridge.admin.openapi`)."""

from __future__ import annotations

from typing import Any

__all__ = ["NULLABLE_TIME", "OUTBOX_STATUS", "SCHEMAS", "STATUS", "TIME"]

TIME = {"type": "string", "description": "RFC 3339 time or UNIX epoch seconds"}
STATUS = {"type": "string", "enum": ["pending", "delivered", "dead"]}
OUTBOX_STATUS = {"type": "string", "enum": ["pending", "published", "dead"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _page_of(key: str, schema: str) -> dict[str, Any]:
    """The schema of one page of a cursor-paged list: its items under ``key``."""
    return {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


SCHEMAS: dict[str, Any] = {
    "InboundMessage": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "inbound": {"type": "string", "description": "Its inbound entry, or pipe subscription"},
            "kind": {"type": "string", "enum": ["inbound", "reply"]},
            "delivery_id": {"type": ["string", "null"], "description": "reply: what it answers"},
            "correlation": {"type": ["string", "null"], "description": "reply: base64"},
            "content_type": {"type": ["string", "null"]},
            "topic": {"type": "string"},
            "status": OUTBOX_STATUS,
            "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": NULLABLE_TIME,
            "published_at": NULLABLE_TIME,
            "expires_at": {"type": "string", "format": "date-time"},
            "dead_reason": {"type": ["string", "null"]},
            "last_error": {"type": ["string", "null"]},
            "size": {"type": "integer"},
            "payload": {"type": "string", "description": "The body (GET of one message only)"},
        },
    },
    "InboundPage": _page_of("messages", "InboundMessage"),
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "subscription": {"type": "string"},
            "status": STATUS,
            "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": {"type": ["string", "null"]},
            "dead_reason": {"type": ["string", "null"]},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "batch_id": {
                "type": ["string", "null"],
                "description": "the batch (webhook-id) it was last sent in; null: none",
            },
        },
    },
    "DeliveryPage": _page_of("deliveries", "Delivery"),
    "EventSummary": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "received_at": {"type": "string", "format": "date-time"},
        },
    },
    "Device": {
        "type": "object",
        "description": "state, changed_at and reason are null for a device whose presence"
        " is not tracked (known from its events only)",
        "properties": {
            "device_id": {"type": "string"},
            "state": {"type": ["string", "null"], "enum": ["online", "offline", None]},
            "changed_at": {"type": ["string", "null"], "description": "In this state since"},
            "reason": {"type": ["string", "null"]},
            "last_seen": {"type": ["string", "null"]},
            "last_event": {
                "oneOf": [{"$ref": "#/components/schemas/EventSummary"}, {"type": "null"}]
            },
        },
    },
    "DevicePage": _page_of("devices", "Device"),
    "DeviceDetail": {
        "type": "object",
        "description": "A Device with its recent events, newest first, and where each of"
        " their deliveries stands",
        "properties": {
            "device_id": {"type": "string"},
            "state": {"type": ["string", "null"]},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "timestamp": {"type": "string"},
                        "received_at": {"type": "string"},
                        "deliveries": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "subscription": {"type": "string"},
                                    "status": STATUS,
                                    "attempts": {"type": "integer"},
                                    "created_at": {"type": "string"},
                                    "next_attempt_at": {"type": ["string", "null"]},
                                    "dead_reason": {"type": ["string", "null"]},
                                    "last_status_code": {"type": ["integer", "null"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "Subscription": {
        "type": "object",
        "description": "Never carries a secret: secret is 'set' or null, headers are names only",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "secret": {"type": ["string", "null"], "enum": ["set", None]},
            "headers": {"type": "array", "items": {"type": "string"}},
            "health": {
                "type": "object",
                "properties": {
                    "disabled": {"type": "boolean"},
                    "last_success": {"type": ["string", "null"]},
                    "last_failure": {"type": ["string", "null"]},
                    "failing_since": {"type": ["string", "null"]},
                    "queue_depth": {"type": "integer"},
                    "in_flight": {"type": "integer"},
                    "circuit_open": {"type": "boolean"},
                },
            },
        },
    },
    "TestPing": {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string"},
            "event_id": {"type": "string"},
            "outcome": {"type": "string", "enum": ["delivered", "failed", "gone"]},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "number"},
            "error": {"type": ["string", "null"]},
            "response_excerpt": {"type": ["string", "null"]},
        },
    },
    "Replay": {
        "type": "object",
        "description": "Either event_ids, or a subscription with an optional since/until window",
        "additionalProperties": False,
        "properties": {
            "event_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
            "subscription": {"type": "string"},
            "since": TIME,
            "until": TIME,
            "status": STATUS,
            "to": {"type": "string", "description": "Send to this subscription instead"},
            "as_new": {"type": "boolean", "description": "A fresh event id"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100000},
        },
    },
}
