"""``hookbridge accounts create|delete|list``, ``hookbridge tokens create|list|revoke`` and
``hookbridge audit``: the operator's side of accounts, through the admin API.

A token is printed once, when it is made: the bridge keeps only its SHA-256.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bridge.cli.api import Api, api_command, query, quote, table

__all__ = ["accounts_app", "audit", "tokens_app"]

accounts_app = typer.Typer(help="Accounts of the running bridge (operator).", no_args_is_help=True)
tokens_app = typer.Typer(help="Account tokens (operator).", no_args_is_help=True)

AccountArgument = Annotated[str, typer.Argument(help="Account id.")]


@accounts_app.command("create")
@api_command
def accounts_create(api: Api, account: AccountArgument) -> None:
    """Make an account."""
    answer = api.call("POST", path="/api/accounts", body={"id": account})
    api.emit(answer, f"{account}: created")


@accounts_app.command("delete")
@api_command
def accounts_delete(api: Api, account: AccountArgument) -> None:
    """Remove an account with its tokens and subscriptions (its events stay until retention)."""
    api.call("DELETE", path=f"/api/accounts/{quote(account)}")
    api.emit({"id": account, "deleted": True}, f"{account}: deleted")


@accounts_app.command("list")
@api_command
def accounts_list(api: Api) -> None:
    """Every account, with how many subscriptions and tokens it holds."""
    answer = api.call("GET", path="/api/accounts")
    rows = [(a["id"], a["subscriptions"], a["tokens"], a["created_at"]) for a in answer["accounts"]]
    header = ("ACCOUNT", "SUBSCRIPTIONS", "TOKENS", "CREATED")
    api.emit(answer, table(rows, header) if rows else "no accounts")


@tokens_app.command("create")
@api_command
def tokens_create(api: Api, account: AccountArgument) -> None:
    """Issue a token of an account; it is shown this once."""
    answer = api.call("POST", path=f"/api/accounts/{quote(account)}/tokens", body={})
    text = f"token {answer['token']}\nid    {answer['id']}  (shown once: keep the token now)"
    api.emit(answer, text)


@tokens_app.command("list")
@api_command
def tokens_list(api: Api, account: AccountArgument) -> None:
    """An account's tokens (their ids; never the tokens)."""
    answer = api.call("GET", path=f"/api/accounts/{quote(account)}/tokens")
    rows = [(t["id"], t["created_at"]) for t in answer["tokens"]]
    api.emit(answer, table(rows, ("TOKEN", "CREATED")) if rows else "no tokens")


@tokens_app.command("revoke")
@api_command
def tokens_revoke(
    api: Api,
    account: AccountArgument,
    token_id: Annotated[str, typer.Argument(help="Token id (tok_…).")],
) -> None:
    """Revoke a token at once."""
    api.call("DELETE", path=f"/api/accounts/{quote(account)}/tokens/{quote(token_id)}")
    api.emit({"id": token_id, "revoked": True}, f"{token_id}: revoked")


def _what(entry: dict[str, Any]) -> str:
    changes = entry.get("changes") or {}
    return ", ".join(sorted(changes))[:60] or "-"


@api_command
def audit(
    api: Api,
    account: Annotated[str | None, typer.Option(help="Only this account's rows.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """Changes to subscriptions, accounts and tokens: who, when, what (secrets masked)."""
    answer = api.call("GET", path=query("/api/audit", account=account, limit=limit, cursor=cursor))
    rows = [
        (
            e["at"],
            e["actor"] + (f" {e['token_id']}" if e.get("token_id") else ""),
            e.get("account"),
            e["action"],
            e["target"],
            _what(e),
        )
        for e in answer["entries"]
    ]
    header = ("WHEN", "WHO", "ACCOUNT", "ACTION", "TARGET", "CHANGED")
    text = table(rows, header) if rows else "no changes recorded"
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    api.emit(answer, text)
