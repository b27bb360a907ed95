"""The audit trail: every change to subscriptions, accounts and tokens, who made it and when.

Who is the operator, or an account and the id of the token it used (never the
token). What changed is recorded with every secret masked: a new or changed
secret is noted as such, never written. ``GET /api/audit`` lists the rows
newest first; an account's token sees only the rows about its own things.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bridge.admin.accounts.principals import Principal, scope
from bridge.admin.params import cursor_errors, iso, json_response, page_limit
from bridge.admin.routes import BRIDGE_KEY
from bridge.errors import OperatorError
from bridge.observe.logs import display_url
from bridge.store.accounts import AuditEntry, AuditNote

__all__ = ["add_audit_routes", "audit_json", "changes", "note", "public_spec"]

MASKED = "********"


def note(
    who: Principal,
    action: str,
    target: str,
    *,
    account: str,
    changed: Mapping[str, Any] | None = None,
) -> AuditNote:
    """One audit row about ``target`` (an object of ``account``) made by ``who`` now."""
    return AuditNote(
        at=time.time(),
        actor=who.actor,
        token_id=who.token_id,
        account=account,
        action=action,
        target=target,
        changes=dict(changed or {}),
    )


def public_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A subscription's fields as the audit trail and the API may show them: the URL
    without credentials or query (receivers often take a token there)."""
    shown = dict(spec)
    if isinstance(shown.get("url"), str):
        shown["url"] = display_url(shown["url"])
    return shown


def changes(
    before: Mapping[str, Any], after: Mapping[str, Any], secrets: list[str]
) -> dict[str, Any]:
    """What differs between two specs (``{key: {from, to}}``), and which secret keys
    changed, masked."""
    old, new = public_spec(before), public_spec(after)
    found: dict[str, Any] = {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }
    for key in secrets:
        found[key] = MASKED
    return found


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    found = entry.note
    return {
        "id": entry.id,
        "at": iso(found.at),
        "actor": found.actor,
        "token_id": found.token_id,
        "account": found.account or None,
        "action": found.action,
        "target": found.target,
        "changes": found.changes,
    }


async def list_audit(request: web.Request) -> web.Response:
    """Newest first; the operator may ask for one account's rows (``account``)."""
    confined = scope(request)
    account = confined
    if confined is None and request.query.get("account") is not None:
        account = request.query["account"]
    elif confined is not None and request.query.get("account") not in (None, confined):
        raise OperatorError("account: an account's token reads its own rows only")
    cursor = request.query.get("cursor") or None
    with cursor_errors(cursor):
        entries, next_cursor = await request.app[BRIDGE_KEY].store.list_audit(
            account=account, cursor=cursor, limit=page_limit(request)
        )
    return json_response({"entries": [audit_json(e) for e in entries], "next_cursor": next_cursor})


def add_audit_routes(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
