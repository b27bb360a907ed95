"""``hookbridge inbound list|show|replay``: accepted inbound webhooks on their way to the broker.

Talks to a running bridge's admin API like the other operator commands (see
:mod:`bridge.cli.admin` for where the API is found and how answers print).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli.admin import ApiClient, ConfigOption, JsonOption, TokenOption, UrlOption, client
from bridge.errors import ApiError

__all__ = ["inbound_app"]

inbound_app = typer.Typer(
    help="Inbound webhooks the running bridge accepted (its MQTT outbox).", no_args_is_help=True
)


def _call(url: str | None, token: str | None, config: Path | None, method: str, path: str) -> Any:
    try:
        api: ApiClient = client(url, token, config)
        return api.call(method, path)
    except ApiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _status(message: dict[str, Any]) -> str:
    reason = message.get("dead_reason")
    return str(message["status"]) + (f" ({reason})" if reason else "")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) if c is not None else "-" for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _emit(as_json: bool, answer: Any, text: str) -> None:
    typer.echo(json.dumps(answer, indent=2) if as_json else text)


@inbound_app.command("list")
def inbound_list(  # noqa: PLR0917 - typer takes each option as a parameter
    status: Annotated[str | None, typer.Option(help="pending, published or dead.")] = None,
    inbound: Annotated[str | None, typer.Option(help="Only this inbound entry.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List inbound messages, newest first."""
    params = {
        k: v
        for k, v in {
            "status": status,
            "inbound": inbound,
            "limit": str(limit),
            "cursor": cursor,
        }.items()
        if v is not None
    }
    answer = _call(url, token, config, "GET", "/api/inbound?" + urllib.parse.urlencode(params))
    rows = [
        (
            m["id"],
            m["inbound"],
            m["topic"],
            _status(m),
            m["attempts"],
            m.get("last_error"),
            m["created_at"],
        )
        for m in answer["messages"]
    ]
    header = ("MESSAGE", "INBOUND", "TOPIC", "STATUS", "ATTEMPTS", "LAST ERROR", "ACCEPTED")
    text = _table(rows, header) if rows else "no inbound messages"
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    _emit(as_json, answer, text)


@inbound_app.command("show")
def inbound_show(
    message_id: Annotated[str, typer.Argument(help="Message id (inb_…).")],
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One inbound message: where it stands, its last error and its payload."""
    m = _call(url, token, config, "GET", f"/api/inbound/{urllib.parse.quote(message_id, '')}")
    lines = [
        f"message     {m['id']}",
        f"inbound     {m['inbound']}",
        f"topic       {m['topic']}",
        f"status      {_status(m)}",
        f"attempts    {m['attempts']}",
        f"accepted    {m['created_at']}",
        f"published   {m.get('published_at') or '-'}",
        f"next try    {m.get('next_attempt_at') or '-'}",
        f"expires     {m.get('expires_at') or '-'}",
        f"last error  {m.get('last_error') or '-'}",
        "",
        m.get("payload") or "",
    ]
    _emit(as_json, m, "\n".join(lines))


@inbound_app.command("replay")
def inbound_replay(
    message_id: Annotated[str, typer.Argument(help="Message id (inb_…).")],
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a dead (or published) message again; its max_age counts from now."""
    path = f"/api/inbound/{urllib.parse.quote(message_id, '')}/replay"
    m = _call(url, token, config, "POST", path)
    _emit(as_json, m, f"{m['id']}: {_status(m)}, due now")
