"""Trying a receiver before it is saved, rotating a signing secret, and what a token is.

``POST /api/subscriptions/test`` sends one ``bridge.test`` event to a draft: the
same fields as a new subscription, checked the same way (the target guard
included), sent once from a sender of its own and never stored. The answer is
what the receiver said: ``{outcome, status_code, latency_ms, error,
response_excerpt}``.

``POST /api/subscriptions/{name}/rotate-secret`` gives a subscription made
through the API a new signing secret, shown once; the secrets that signed until
now go on signing beside it for ``accounts.secret_grace`` (Standard Webhooks
verifiers accept any one of the space-separated ``v1,`` signatures), so a
receiver can switch without losing a delivery.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from bridge.admin.accounts import specs
from bridge.admin.accounts.audit import note
from bridge.admin.accounts.principals import principal
from bridge.admin.accounts.subscriptions import etag, new_secret, served, stored_row
from bridge.admin.params import iso, json_response
from bridge.core.event_descriptions import DESCRIPTIONS
from bridge.core.events import Event, new_event_id
from bridge.core.settings.checks import check_webhook_secret
from bridge.delivery.send import Sender, default_user_agent
from bridge.errors import Conflict, NotFound, OperatorError
from bridge.observe.logs import register_secrets
from bridge.store.accounts import SubscriptionUpdate, Updated

__all__ = ["add_draft_routes"]

_DRAFT_NAME = "draft"


async def draft_test(request: web.Request) -> web.Response:
    """Send a ``bridge.test`` to a subscription that is not saved; store nothing."""
    bridge, who = served(request), principal(request)
    body = await specs.read_body(request)
    body.pop("account", None)  # a draft belongs to nobody
    body.setdefault("name", _DRAFT_NAME)  # the name is not checked against others
    sub = specs.build(body, settings=bridge.settings, who=who)
    await specs.check_targets(sub, bridge.settings)
    register_secrets(specs.secret_values(specs.split(sub)[1]))
    moment = datetime.now(UTC)
    event = Event(
        id=new_event_id(moment, os.urandom(10)),
        type="bridge.test",
        timestamp=moment,
        source=f"hookbridge://{bridge.owner}",
        data={"message": "test event from HookBridge", "subscription": sub.name},
        account=who.account,
    )
    # A sender of its own: the draft's pool never touches a running subscription's.
    sender = Sender(
        bridge.settings.model_copy(update={"subscriptions": []}),
        user_agent=default_user_agent(),
    )
    await sender.start()
    try:
        result = await sender.attempt(sub, event, delivery_id="draft", attempt=1)
    finally:
        await sender.close()
    return json_response(
        {
            "outcome": result.outcome,
            "status_code": result.status_code,
            "latency_ms": round(result.latency_ms, 2),
            "error": result.error,
            "response_excerpt": result.response_excerpt,
        }
    )


async def rotate_secret(request: web.Request) -> web.Response:
    bridge, who = served(request), principal(request)
    name = request.match_info["name"]
    row = await stored_row(request, name)
    body = await specs.read_body(request)
    unknown = sorted(set(body) - {"secret"})
    if unknown:
        raise OperatorError(f"{unknown[0]}: unknown field (only secret may be given)")
    given = body.get("secret")
    if given is not None and not isinstance(given, str):
        raise OperatorError("secret: must be a string")
    if given is not None:
        try:
            check_webhook_secret(SecretStr(given))
        except ValueError as exc:
            raise OperatorError(f"secret: {exc}") from None
    fresh = given or new_secret()
    register_secrets([fresh])
    now = time.time()
    grace_until = now + bridge.settings.accounts.secret_grace
    secrets = specs.rotated(
        bridge.managed.secrets.get(name, {}), fresh, grace_until=grace_until, now=now
    )
    audit = note(
        who,
        "subscription.secret_rotated",
        name,
        account=row.account,
        changed={"secret": "********", "previous_valid_until": iso(grace_until)},
    )
    sealed = bridge.managed.sealer.seal(secrets)
    update = SubscriptionUpdate(name, row.revision, row.spec, sealed, now, audit)
    outcome, _ = await bridge.store.update_subscription(update)
    if outcome is Updated.GONE:
        raise NotFound(f"no subscription named '{name}'")
    if outcome is Updated.STALE:
        raise Conflict(f"'{name}' changed while its secret was rotated; try again")
    await bridge.managed.refresh()
    stored = bridge.managed.rows.get(name)
    answer: dict[str, Any] = {
        "name": name,
        "secret": fresh,
        "previous_valid_until": iso(grace_until),
        "signing": len(specs.live_signing(secrets, now=now)),
        "etag": etag(stored) if stored is not None else None,
    }
    return json_response(answer)


async def whoami(request: web.Request) -> web.Response:
    """Who the token is: the operator, or an account (the dashboard shows what it may)."""
    who = principal(request)
    return json_response(
        {"operator": who.operator, "account": who.account, "token_id": who.token_id}
    )


async def event_types(request: web.Request) -> web.Response:
    """The event types a subscription of the caller can receive, with what each means."""
    bridge = served(request)
    declared = {t.name: t.description for t in bridge.settings.event_types}
    types = [
        {
            "name": name,
            "description": DESCRIPTIONS.get(name) or declared.get(name) or "",
            "declared": name in declared,
        }
        for name in specs.event_types_for(bridge.settings, principal(request))
    ]
    return json_response({"event_types": types})


def add_draft_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/subscriptions/test", draft_test)
    r.add_post("/api/subscriptions/{name}/rotate-secret", rotate_secret)
    r.add_get("/api/whoami", whoami)
    r.add_get("/api/event-types", event_types)
