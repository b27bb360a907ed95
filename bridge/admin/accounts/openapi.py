"""The OpenAPI description of the routes of accounts, API subscriptions and the audit
trail, merged into :func:`bridge.admin.openapi.openapi_document`.

Every secured operation an account's token may not call is documented with its
403 here too, from the one list the server enforces (``ACCOUNT_ROUTES``).
"""

from __future__ import annotations

from typing import Any

from bridge.admin.accounts.principals import ACCOUNT_ROUTES

__all__ = ["ACCOUNT_PATHS", "ACCOUNT_SCHEMAS", "annotate"]

_ERROR = {"$ref": "#/components/responses/Error"}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _json(schema: str | None = None) -> dict[str, Any]:
    if schema is None:
        return _OBJECT
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


_TEXT = {"type": "string", "minLength": 1}
_NAME = _param("name", "path", "Subscription name", _TEXT)
_ACCOUNT = _param("account", "path", "Account id", _TEXT)
_TOKEN = _param("token_id", "path", "Token id (tok_…)", _TEXT)
_IF_MATCH = _param(
    "If-Match", "header", "The ETag of the subscription as read (or *)", {"type": "string"}
)
_PAGE = [
    _param("cursor", "query", "next_cursor of the previous page", {"type": "string"}),
    _param("limit", "query", "Page size", {"type": "integer", "minimum": 1, "maximum": 500}),
]


def _op(
    summary: str,
    *,
    status: int = 200,
    schema: str | None = None,
    errors: tuple[int, ...] = (401,),
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """One operation; a success other than 200 is listed under its code and, for
    clients that read ``200`` first, under ``200`` as well, saying which code it is."""
    answer: dict[str, Any] = {"description": "Success", "content": _json(schema)}
    if status == 204:
        answer = {"description": "Done; no body"}
    responses: dict[str, Any] = {str(status): answer}
    if status != 200:
        responses["200"] = {"description": f"Never: this operation answers {status} on success"}
    responses.update({str(code): _ERROR for code in errors})
    op: dict[str, Any] = {"summary": summary, "responses": responses, "security": _SECURED}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    return op


_DRAFT = "Fields of a subscription as the configuration writes them (name optional)"

ACCOUNT_SCHEMAS: dict[str, Any] = {
    "SubscriptionFields": {
        "type": "object",
        "description": "The keys of a subscription in the configuration file (see"
        " configuration.md), plus account (the operator's only: whose it is). secret left"
        " out: one is generated and answered once; null: unsigned",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "filter": {"type": ["string", "null"]},
            "format": {"type": "string"},
            "secret": {"type": ["string", "null"]},
            "verify_tls": {"type": "boolean"},
            "account": {"type": "string"},
        },
    },
    "DraftAnswer": {
        "type": "object",
        "properties": {
            "outcome": {"type": "string", "enum": ["delivered", "failed", "gone"]},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "number"},
            "error": {"type": ["string", "null"]},
            "response_excerpt": {"type": ["string", "null"]},
        },
    },
    "Rotation": {
        "type": "object",
        "description": "secret: a new secret to sign with (else one is generated)",
        "properties": {"secret": {"type": "string"}},
    },
    "NewAccount": {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {"id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}},
    },
    "NewToken": {"type": "object", "additionalProperties": False, "properties": {}},
    "IssuedToken": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "account": {"type": "string"},
            "token": {"type": "string", "description": "hbt_…: shown in this answer only"},
        },
    },
    "AuditPage": {
        "type": "object",
        "properties": {
            "entries": {"type": "array", "items": {"type": "object"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}

ACCOUNT_PATHS: dict[str, dict[str, Any]] = {
    "/api/subscriptions": {
        "post": _op(
            "Make a subscription (kept in the store, on every instance within 2 s): 201 with"
            " the subscription, its ETag, its secret (shown once) and warnings",
            status=201,
            schema="Subscription",
            errors=(400, 401, 404, 409, 413),
            body="SubscriptionFields",
        )
    },
    "/api/subscriptions/test": {
        "post": _op(
            "Send a bridge.test to a draft that is not saved; store nothing",
            schema="DraftAnswer",
            errors=(400, 401, 413),
            body="SubscriptionFields",
        )
    },
    "/api/subscriptions/{name}": {
        "get": _op(
            "One subscription (its ETag in the ETag header)",
            schema="Subscription",
            errors=(401, 404),
            parameters=[_NAME],
        ),
        "patch": _op(
            "Change a subscription made through the API (JSON merge patch); needs If-Match",
            schema="Subscription",
            errors=(400, 401, 404, 409, 412, 413, 428),
            parameters=[_NAME, _IF_MATCH],
            body="SubscriptionFields",
        ),
        "delete": _op(
            "Delete a subscription made through the API; its pending deliveries end dead (deleted)",
            status=204,
            errors=(401, 404, 409),
            parameters=[_NAME],
        ),
    },
    "/api/subscriptions/{name}/rotate-secret": {
        "post": _op(
            "A new signing secret, shown once; the previous ones go on signing for"
            " accounts.secret_grace",
            errors=(400, 401, 404, 409, 413),
            parameters=[_NAME],
            body="Rotation",
        )
    },
    "/api/accounts": {
        "get": _op("The accounts, with how many subscriptions and tokens each holds"),
        "post": _op("Make an account", status=201, errors=(400, 401, 409, 413), body="NewAccount"),
    },
    "/api/accounts/{account}": {
        "delete": _op(
            "Remove an account with its tokens and subscriptions",
            status=204,
            errors=(401, 404),
            parameters=[_ACCOUNT],
        )
    },
    "/api/accounts/{account}/tokens": {
        "get": _op(
            "The account's tokens (never the tokens)", errors=(401, 404), parameters=[_ACCOUNT]
        ),
        "post": _op(
            "Issue a token of the account (hbt_…, shown once)",
            status=201,
            schema="IssuedToken",
            errors=(400, 401, 404, 413),
            parameters=[_ACCOUNT],
            body="NewToken",
        ),
    },
    "/api/accounts/{account}/tokens/{token_id}": {
        "delete": _op(
            "Revoke a token at once", status=204, errors=(401, 404), parameters=[_ACCOUNT, _TOKEN]
        )
    },
    "/api/audit": {
        "get": _op(
            "Changes to subscriptions, accounts and tokens, newest first, secrets masked",
            schema="AuditPage",
            errors=(400, 401),
            parameters=[
                _param("account", "query", "Only this account's rows", {"type": "string"}),
                *_PAGE,
            ],
        )
    },
    "/api/whoami": {"get": _op("Who the token is: the operator, or an account")},
    "/dashboard/settings": {
        "get": {
            "summary": "The webhook settings page (it asks for a token)",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            "security": [],
        }
    },
    "/api/event-types": {
        "get": _op("The event types a subscription of the caller can pick, with what each means")
    },
}


def annotate(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with these paths merged in, and the 403 of every secured operation an
    account's token may not call."""
    paths: dict[str, dict[str, Any]] = document["paths"]
    for path, operations in ACCOUNT_PATHS.items():
        paths[path] = {**paths.get(path, {}), **operations}
    for path, operations in paths.items():
        for method, op in operations.items():
            if op.get("security") and (method.upper(), path) not in ACCOUNT_ROUTES:
                op["responses"]["403"] = _ERROR
    document["components"]["schemas"].update(ACCOUNT_SCHEMAS)
    return document
