"""``/api/subscriptions``: list, read, make, change and delete subscriptions at run time.

Those of the configuration file are listed with ``source: config`` and are read
only here. Those made here (``source: api``) are kept in the store and run on
every instance within about a second (:mod:`bridge.admin.accounts.managed`).
An account's token lists and touches its own only; another's answers 404.

``PATCH`` is a JSON merge patch (a key set to null goes back to its default)
and needs ``If-Match`` with the ``ETag`` of the subscription as read: 428
without it, 412 when the subscription changed since, so two editors never
overwrite each other silently. Every change goes to the store in one
transaction with its audit row: nothing is ever half saved.
"""

from __future__ import annotations

import secrets as randomness
import time
from typing import Any

from aiohttp import web

from bridge.admin.accounts import specs
from bridge.admin.accounts.audit import changes, note, public_spec
from bridge.admin.accounts.principals import Principal, principal, scope
from bridge.admin.operations import ServedBridge
from bridge.admin.params import iso, json_response
from bridge.admin.routes import BRIDGE_KEY, subscription_json
from bridge.config import Subscription
from bridge.core.signing import format_secret
from bridge.errors import Conflict, NotFound, OperatorError
from bridge.observe.logs import register_secrets
from bridge.store.accounts import Created, StoredSubscription, SubscriptionUpdate, Updated

__all__ = [
    "add_subscription_routes",
    "describe",
    "etag",
    "new_secret",
    "served",
    "stored_row",
    "visible",
]

_READ_ONLY = "comes from the configuration file and is read-only through the API"


def new_secret() -> str:
    """A fresh ``whsec_`` signing secret (32 random bytes)."""
    return format_secret(randomness.token_bytes(32))


def etag(row: StoredSubscription) -> str:
    return f'"r{row.revision}"'


def served(request: web.Request) -> ServedBridge:
    return request.app[BRIDGE_KEY]


def visible(request: web.Request, name: str) -> Subscription:
    """The subscription ``name`` if the caller may see it; else 404, as if there were none."""
    return served(request).operations.subscription(name, scope(request))


async def stored_row(request: web.Request, name: str) -> StoredSubscription:
    """The current stored row of a subscription made through the API; 409 for one of the
    file."""
    await served(request).managed.catch_up()
    visible(request, name)
    row = served(request).managed.rows.get(name)
    if row is None:
        raise Conflict(f"'{name}' {_READ_ONLY}")
    return row


async def describe(bridge: ServedBridge, sub: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: its health, where it comes from, whose it is,
    and no secret (a hint of the current signing secret at most)."""
    body = await subscription_json(bridge, sub)
    managed = bridge.managed
    row = managed.rows.get(sub.name)
    signing = managed.secrets.get(sub.name, {}).get("secret", [])
    body.update(
        {
            "source": "api" if row is not None else "config",
            "account": (row.account or None) if row is not None else None,
            "etag": etag(row) if row is not None else None,
            "secret_hint": specs.secret_hint(signing[0]["value"]) if signing else None,
            "secrets_signing": len(sub.secrets),
            "verify_tls": sub.verify_tls,
            "timeout_s": sub.timeout,
            "ordered": sub.ordered,
            "auth": None if sub.auth is None else sub.auth.type,
            "created_at": iso(row.created_at) if row is not None else None,
            "updated_at": iso(row.updated_at) if row is not None else None,
        }
    )
    return body


def _answer(
    body: dict[str, Any], row: StoredSubscription | None, status: int = 200
) -> web.Response:
    response = json_response(body, status=status)
    if row is not None:
        response.headers["ETag"] = etag(row)
    return response


# -- reading ---------------------------------------------------------------------------------


async def list_subscriptions(request: web.Request) -> web.Response:
    bridge = served(request)
    confined = scope(request)
    wanted = confined if confined is not None else request.query.get("account")
    items = []
    for sub in bridge.settings.subscriptions:
        owner = bridge.managed.owner(sub.name)
        if wanted is not None and owner != wanted:
            continue
        items.append(await describe(bridge, sub))
    return json_response({"subscriptions": items})


async def get_subscription(request: web.Request) -> web.Response:
    sub = visible(request, request.match_info["name"])
    bridge = served(request)
    return _answer(await describe(bridge, sub), bridge.managed.rows.get(sub.name))


# -- making, changing, deleting ----------------------------------------------------------------


def _owner_of(body: dict[str, Any], who: Principal) -> str:
    """The account a new subscription belongs to: the token's, or (the operator) the
    ``account`` the body names; "" for the operator's own."""
    named = body.pop("account", None)
    if named is not None and not isinstance(named, str):
        raise OperatorError("account: must be an account id")
    if who.account is not None:
        if named not in (None, who.account):
            raise OperatorError("account: a token makes subscriptions of its own account only")
        return who.account
    return named or ""


def _sealed(bridge: ServedBridge, secrets: specs.Secrets) -> bytes | None:
    """The secrets sealed for the store; refused clearly without an encryption key."""
    values = [*secrets["secret"], *secrets["headers"].values(), *secrets["auth"].values()]
    if not values:
        return None
    sealer = bridge.managed.sealer
    if not sealer.has_key:
        raise Conflict(
            "store.encryption_key is not set on this bridge, so the secrets of a subscription "
            "cannot be kept; set it (hookbridge keys encryption makes one), or send "
            '"secret": null for an unsigned subscription without credentials'
        )
    return sealer.seal(secrets)


async def create_subscription(request: web.Request) -> web.Response:
    bridge, who = served(request), principal(request)
    body = await specs.read_body(request)
    owner = _owner_of(body, who)
    secret = body["secret"] if "secret" in body else new_secret()
    sub = specs.build({**body, "secret": secret}, settings=bridge.settings, who=who)
    await specs.check_targets(sub, bridge.settings)
    spec, secrets = specs.split(sub)
    register_secrets(specs.secret_values(secrets))
    now = time.time()
    row = StoredSubscription(sub.name, owner, 1, spec, _sealed(bridge, secrets), now, now)
    limit = bridge.settings.accounts.max_subscriptions if owner else None
    audit = note(who, "subscription.created", sub.name, account=owner, changed=public_spec(spec))
    reserved = [s.name for s in bridge.managed.file_subscriptions()]
    created = await bridge.store.create_subscription(
        row, reserved=reserved, limit=limit, audit=audit
    )
    if created is Created.TAKEN:
        raise Conflict("name taken")
    if created is Created.LIMIT:
        raise Conflict(
            f"accounts.max_subscriptions: account '{owner}' holds {limit} subscriptions, "
            "the most it may; delete one first"
        )
    if created is Created.NO_ACCOUNT:
        raise NotFound(f"no account '{owner}'")
    await bridge.managed.refresh()
    answer = await describe(bridge, bridge.operations.subscription(sub.name))
    answer["secret"] = secrets["secret"][0]["value"] if secrets["secret"] else None
    answer["warnings"] = specs.warnings_for(sub, bridge.settings)
    response = _answer(answer, bridge.managed.rows.get(sub.name), status=201)
    response.headers["Location"] = f"/api/subscriptions/{sub.name}"
    return response


def _expected_revision(request: web.Request, row: StoredSubscription) -> int:
    given = request.headers.get("If-Match")
    if given is None:
        raise web.HTTPPreconditionRequired(
            reason="If-Match required: send the ETag of the subscription as you read it"
        )
    if given.strip() == "*":
        return row.revision
    if given.strip() != etag(row):
        raise web.HTTPPreconditionFailed(
            reason="the subscription changed since it was read (ETag differs); read it again"
        )
    return row.revision


async def update_subscription(request: web.Request) -> web.Response:
    bridge, who = served(request), principal(request)
    name = request.match_info["name"]
    row = await stored_row(request, name)
    revision = _expected_revision(request, row)
    patch = await specs.read_body(request)
    if patch.get("name", name) != name:
        raise OperatorError("name: a subscription's name cannot be changed")
    if "account" in patch:
        raise OperatorError("account: a subscription's account cannot be changed")
    now = time.time()
    stored = bridge.managed.secrets.get(name, {})
    doc = specs.join(row.spec, stored, now=now)
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    sub = specs.build(doc, settings=bridge.settings, who=who)
    await specs.check_targets(sub, bridge.settings)
    spec, secrets = specs.split(sub)
    if "secret" not in patch:  # a rotated secret keeps its grace
        secrets["secret"] = specs.live_signing(stored, now=now)
    register_secrets(specs.secret_values(secrets))
    touched = [key for key in specs.SECRET_KEYS if key in patch]
    audit = note(
        who,
        "subscription.updated",
        name,
        account=row.account,
        changed=changes(row.spec, spec, touched),
    )
    update = SubscriptionUpdate(name, revision, spec, _sealed(bridge, secrets), now, audit)
    outcome, _ = await bridge.store.update_subscription(update)
    if outcome is Updated.GONE:
        raise NotFound(f"no subscription named '{name}'")
    if outcome is Updated.STALE:
        raise web.HTTPPreconditionFailed(
            reason="the subscription changed since it was read (ETag differs); read it again"
        )
    await bridge.managed.refresh()
    answer = await describe(bridge, bridge.operations.subscription(name))
    answer["warnings"] = specs.warnings_for(sub, bridge.settings)
    return _answer(answer, bridge.managed.rows.get(name))


async def delete_subscription(request: web.Request) -> web.Response:
    bridge, who = served(request), principal(request)
    name = request.match_info["name"]
    row = await stored_row(request, name)
    audit = note(who, "subscription.deleted", name, account=row.account)
    ended = await bridge.store.delete_subscription(name, now=time.time(), audit=audit)
    if ended is None:
        raise NotFound(f"no subscription named '{name}'")
    await bridge.managed.refresh()
    return web.Response(status=204)


def add_subscription_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/subscriptions", list_subscriptions)
    r.add_post("/api/subscriptions", create_subscription)
    r.add_get("/api/subscriptions/{name}", get_subscription)
    r.add_patch("/api/subscriptions/{name}", update_subscription)
    r.add_delete("/api/subscriptions/{name}", delete_subscription)
