"""``hookbridge subscriptions create|show|update|delete|rotate-secret``: subscriptions made
through the running bridge's API, beside those of its configuration file.

They talk to the admin API like the other operator commands (see
:mod:`bridge.cli.api`); with an account's token (``--token hbt_…``) they act for
that account. ``update`` reads the subscription first and sends its ETag, so a
change made meanwhile by someone else is refused (412), never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from bridge.cli.admin import subscriptions_app
from bridge.cli.api import Api, api_command, quote

__all__ = ["subscription_text"]

FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="A JSON or YAML file with more keys (headers, auth, batch…)."),
]
EventsOption = Annotated[
    list[str] | None, typer.Option("--event", help="An event type or glob; repeat for more.")
]


def _from_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        found = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"error: {path}: cannot be read ({type(exc).__name__})", err=True)
        raise typer.Exit(2) from None
    if not isinstance(found, dict):
        typer.echo(f"error: {path}: must hold a mapping of subscription keys", err=True)
        raise typer.Exit(2)
    return found


def subscription_text(answer: dict[str, Any]) -> str:
    """A subscription as a few lines; its secret when the answer shows it (once)."""
    lines = [
        f"name      {answer['name']}",
        f"url       {answer['url']}",
        f"events    {', '.join(answer['events'])}",
        f"source    {answer.get('source', '-')}"
        + (f" (account {answer['account']})" if answer.get("account") else ""),
        f"signing   {answer.get('secret_hint') or answer.get('secret') or 'unsigned'}",
    ]
    if answer.get("etag"):
        lines.append(f"etag      {answer['etag']}")
    if isinstance(answer.get("secret"), str) and answer["secret"] != "set":  # noqa: S105
        lines.append(f"secret    {answer['secret']}  (shown once: keep it now)")
    lines += [f"warning   {warning}" for warning in answer.get("warnings", [])]
    return "\n".join(lines)


@subscriptions_app.command("create")
@api_command
def create(  # noqa: PLR0917 - typer takes each option as a parameter
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
    target: Annotated[str, typer.Argument(help="The receiver's URL.")],
    event: EventsOption = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="JMESPath over the envelope.")
    ] = None,
    format_: Annotated[
        str | None, typer.Option("--format", help="json, xml, form, cloudevents…")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="The signing secret (default: a new one, shown once).")
    ] = None,
    unsigned: Annotated[bool, typer.Option("--unsigned", help="Send unsigned.")] = False,
    no_verify_tls: Annotated[
        bool, typer.Option("--no-verify-tls", help="Do not check the receiver's TLS certificate.")
    ] = False,
    account: Annotated[
        str | None, typer.Option(help="The account it belongs to (operator token).")
    ] = None,
    file: FileOption = None,
) -> None:
    """Make a subscription at run time (kept in the store, running on every instance)."""
    body: dict[str, Any] = {**_from_file(file), "name": name, "url": target}
    given: dict[str, Any] = {
        "events": event or None,
        "filter": filter_,
        "format": format_,
        "secret": secret,
        "account": account,
    }
    body.update({key: value for key, value in given.items() if value is not None})
    if no_verify_tls:
        body["verify_tls"] = False
    if unsigned:
        body["secret"] = None
    answer = api.call("POST", path="/api/subscriptions", body=body)
    api.emit(answer, subscription_text(answer))


@subscriptions_app.command("show")
@api_command
def show(
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
) -> None:
    """One subscription: where it comes from, whose it is, its health."""
    answer = api.call("GET", path=f"/api/subscriptions/{quote(name)}")
    api.emit(answer, subscription_text(answer))


@subscriptions_app.command("update")
@api_command
def update(  # noqa: PLR0917 - typer takes each option as a parameter
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
    target: Annotated[str | None, typer.Option("--target", help="A new receiver URL.")] = None,
    event: EventsOption = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="A new filter.")] = None,
    format_: Annotated[str | None, typer.Option("--format", help="A new format.")] = None,
    verify_tls: Annotated[
        bool | None, typer.Option("--verify-tls/--no-verify-tls", help="Check TLS or not.")
    ] = None,
    file: FileOption = None,
) -> None:
    """Change a subscription made through the API (only the keys given change)."""
    patch: dict[str, Any] = _from_file(file)
    given: dict[str, Any] = {
        "url": target,
        "events": event or None,
        "filter": filter_,
        "format": format_,
        "verify_tls": verify_tls,
    }
    patch.update({key: value for key, value in given.items() if value is not None})
    if not patch:
        typer.echo("error: nothing to change: give an option or --file", err=True)
        raise typer.Exit(2)
    path = f"/api/subscriptions/{quote(name)}"
    current = api.call("GET", path=path)
    answer = api.call("PATCH", path=path, body=patch, headers={"If-Match": current["etag"]})
    api.emit(answer, subscription_text(answer))


@subscriptions_app.command("delete")
@api_command
def delete(
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
) -> None:
    """Delete a subscription made through the API; its pending deliveries end dead."""
    api.call("DELETE", path=f"/api/subscriptions/{quote(name)}")
    api.emit({"name": name, "deleted": True}, f"{name}: deleted")


@subscriptions_app.command("rotate-secret")
@api_command
def rotate_secret(
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
    secret: Annotated[str | None, typer.Option(help="The new secret (default: a new one).")] = None,
) -> None:
    """A new signing secret, shown once; the old one signs beside it for the grace period."""
    body = {} if secret is None else {"secret": secret}
    answer = api.call("POST", path=f"/api/subscriptions/{quote(name)}/rotate-secret", body=body)
    text = (
        f"{name}: new secret {answer['secret']}  (shown once: keep it now)\n"
        f"the previous one signs beside it until {answer['previous_valid_until']}"
    )
    api.emit(answer, text)
