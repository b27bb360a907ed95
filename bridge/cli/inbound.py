"""``hookbridge inbound list|show|replay``: the MQTT outbox (accepted inbound webhooks and
pipe replies) on its way to the broker.

Talks to a running bridge's admin API like the other operator commands (see
the options of :mod:`bridge.cli.api`: where the API is, and how answers print).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bridge.cli.api import Api, api_command, query, quote, table

__all__ = ["inbound_app"]

inbound_app = typer.Typer(
    help="Inbound webhooks and pipe replies the running bridge publishes (its MQTT outbox).",
    no_args_is_help=True,
)


def _source(message: dict[str, Any]) -> str:
    """The inbound entry, or the pipe subscription marked as a reply."""
    name = str(message["inbound"])
    return f"{name} (reply)" if message.get("kind") == "reply" else name


def _status(message: dict[str, Any]) -> str:
    reason = message.get("dead_reason")
    return str(message["status"]) + (f" ({reason})" if reason else "")


@inbound_app.command("list")
@api_command
def inbound_list(
    api: Api,
    status: Annotated[str | None, typer.Option(help="pending, published or dead.")] = None,
    inbound: Annotated[
        str | None, typer.Option(help="Only this inbound entry (or pipe subscription).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """List inbound messages and pipe replies, newest first."""
    path = query("/api/inbound", status=status, inbound=inbound, limit=limit, cursor=cursor)
    answer = api.call("GET", path=path)
    rows = [
        (
            m["id"],
            _source(m),
            m["topic"],
            _status(m),
            m["attempts"],
            m.get("last_error"),
            m["created_at"],
        )
        for m in answer["messages"]
    ]
    header = ("MESSAGE", "SOURCE", "TOPIC", "STATUS", "ATTEMPTS", "LAST ERROR", "ACCEPTED")
    text = table(rows, header) if rows else "no inbound messages"
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    api.emit(answer, text)


@inbound_app.command("show")
@api_command
def inbound_show(
    api: Api,
    message_id: Annotated[str, typer.Argument(help="Message id (inb_…).")],
) -> None:
    """One inbound message: where it stands, its last error and its payload."""
    m = api.call("GET", path=f"/api/inbound/{quote(message_id)}")
    lines = [
        f"message     {m['id']}",
        f"source      {_source(m)}",
        *([f"answers     {m['delivery_id']}"] if m.get("delivery_id") else []),
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
    api.emit(m, "\n".join(lines))


@inbound_app.command("replay")
@api_command
def inbound_replay(
    api: Api,
    message_id: Annotated[str, typer.Argument(help="Message id (inb_…).")],
) -> None:
    """Publish a dead (or published) message again; its max_age counts from now."""
    path = f"/api/inbound/{quote(message_id)}/replay"
    m = api.call("POST", path=path)
    api.emit(m, f"{m['id']}: {_status(m)}, due now")
