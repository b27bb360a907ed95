"""The operator's routes for accounts and their tokens.

``POST /api/accounts {"id": …}`` makes an account; ``DELETE /api/accounts/{id}``
removes it with its tokens and its subscriptions (their pending deliveries end
dead, ``deleted``; its devices and events stay until retention).
``POST /api/accounts/{id}/tokens`` issues a token (``hbt_…``), shown in this
answer only and kept as its SHA-256; ``DELETE …/tokens/{token_id}`` revokes it
at once. Only the operator's token reaches these (see
:mod:`bridge.admin.accounts.principals`); each change is in the audit trail.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bridge.admin.accounts import specs
from bridge.admin.accounts.audit import note
from bridge.admin.accounts.principals import new_token, principal
from bridge.admin.accounts.subscriptions import served
from bridge.admin.params import iso, json_response
from bridge.core.settings.accounts import account_problem
from bridge.errors import Conflict, NotFound, OperatorError
from bridge.store.accounts import Account, AccountToken

__all__ = ["add_operator_routes"]


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "created_at": iso(account.created_at),
        "subscriptions": account.subscriptions,
        "tokens": account.tokens,
    }


def _token_json(token: AccountToken) -> dict[str, Any]:
    return {"id": token.id, "account": token.account, "created_at": iso(token.created_at)}


async def list_accounts(request: web.Request) -> web.Response:
    accounts = await served(request).store.list_accounts()
    return json_response({"accounts": [_account_json(a) for a in accounts]})


async def create_account(request: web.Request) -> web.Response:
    body = await specs.read_body(request)
    unknown = sorted(set(body) - {"id"})
    if unknown:
        raise OperatorError(f"{unknown[0]}: unknown field (an account has an id only)")
    account = body.get("id")
    if not isinstance(account, str):
        raise OperatorError("id: missing; give the account's id")
    problem = account_problem(account)
    if problem is not None:
        raise OperatorError(f"id: {problem}")
    bridge = served(request)
    audit = note(principal(request), "account.created", account, account=account)
    if not await bridge.store.create_account(account, now=time.time(), audit=audit):
        raise Conflict(f"account '{account}' exists")
    return json_response({"id": account, "created_at": iso(audit.at)}, status=201)


async def delete_account(request: web.Request) -> web.Response:
    bridge = served(request)
    account = request.match_info["account"]
    audit = note(principal(request), "account.deleted", account, account=account)
    deleted = await bridge.store.delete_account(account, now=time.time(), audit=audit)
    if deleted is None:
        raise NotFound(f"no account '{account}'")
    if deleted:
        await bridge.managed.refresh()
    return web.Response(status=204)


async def list_tokens(request: web.Request) -> web.Response:
    account = request.match_info["account"]
    tokens = await served(request).store.list_tokens(account)
    if tokens is None:
        raise NotFound(f"no account '{account}'")
    return json_response({"tokens": [_token_json(t) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    bridge = served(request)
    account = request.match_info["account"]
    body = await specs.read_body(request)
    if body:
        raise OperatorError(f"{sorted(body)[0]}: unknown field (a token takes none)")
    token_id, token, digest = new_token()
    audit = note(principal(request), "token.created", token_id, account=account)
    if not await bridge.store.create_token(account, token_id, digest, now=audit.at, audit=audit):
        raise NotFound(f"no account '{account}'")
    # The only time the token is shown: the store keeps its digest alone.
    return json_response({"id": token_id, "account": account, "token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    account, token_id = request.match_info["account"], request.match_info["token_id"]
    audit = note(principal(request), "token.revoked", token_id, account=account)
    if not await served(request).store.revoke_token(account, token_id, audit=audit):
        raise NotFound(f"account '{account}' has no token '{token_id}'")
    return web.Response(status=204)


def add_operator_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/accounts", list_accounts)
    r.add_post("/api/accounts", create_account)
    r.add_delete("/api/accounts/{account}", delete_account)
    r.add_get("/api/accounts/{account}/tokens", list_tokens)
    r.add_post("/api/accounts/{account}/tokens", create_token)
    r.add_delete("/api/accounts/{account}/tokens/{token_id}", revoke_token)
