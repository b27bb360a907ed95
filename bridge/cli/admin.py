"""Operator commands that talk to a running bridge through its admin API.

``hookbridge deliveries list|show|retry|replay``, ``hookbridge rejected list``,
``hookbridge test-endpoint NAME``, ``hookbridge subscriptions
list|enable|disable|flush``, and the device directory: ``hookbridge devices`` and
``hookbridge device ID``. Each takes the options of :mod:`bridge.cli.api`
(where the API is, and ``--json``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from bridge.cli.api import Api, api_command, query, quote, table

__all__ = ["register"]


def _status_text(delivery: dict[str, Any]) -> str:
    status = str(delivery["status"])
    reason = delivery.get("dead_reason")
    return status + (f" ({reason})" if reason else "")


def _delivery_rows(deliveries: list[dict[str, Any]]) -> str:
    rows = [
        (
            d["id"],
            d["subscription"],
            d["event_type"],
            _status_text(d),
            d["attempts"],
            d.get("last_status_code") or d.get("last_error"),
            d.get("next_attempt_at"),
            d["created_at"],
        )
        for d in deliveries
    ]
    header = (
        "DELIVERY",
        "SUBSCRIPTION",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
        "LAST",
        "NEXT ATTEMPT",
        "CREATED",
    )
    return table(rows, header) if rows else "no deliveries"


deliveries_app = typer.Typer(help="Deliveries of the running bridge.", no_args_is_help=True)
rejected_app = typer.Typer(help="Messages the running bridge rejected.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions of the running bridge.", no_args_is_help=True)


@deliveries_app.command("list")
@api_command
def deliveries_list(  # noqa: PLR0917 - typer takes each option as a parameter
    api: Api,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """List deliveries, newest first."""
    path = query(
        "/api/deliveries",
        subscription=subscription,
        status=status,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    answer = api.call("GET", path=path)
    text = _delivery_rows(answer["deliveries"])
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    api.emit(answer, text)


@deliveries_app.command("show")
@api_command
def deliveries_show(
    api: Api,
    delivery_id: Annotated[str, typer.Argument(help="Delivery id (dlv_…).")],
) -> None:
    """One delivery with its event and every attempt."""
    d = api.call("GET", path=f"/api/deliveries/{quote(delivery_id)}")
    lines = [
        f"delivery      {d['id']}",
        f"subscription  {d['subscription']}",
        f"event         {d['event_id']} ({d['event_type']})",
        f"status        {_status_text(d)}",
        f"attempts      {d['attempts']}",
        f"created       {d['created_at']}",
    ]
    if d.get("next_attempt_at"):
        lines.append(f"next attempt  {d['next_attempt_at']}")
    if d.get("batch_id"):
        lines.append(f"batch         {d['batch_id']}")
    rows = [
        (
            a["attempt"],
            a["started_at"],
            a["status_code"],
            f"{a['latency_ms']:.1f} ms",
            a.get("error") or (a.get("response_excerpt") or "")[:60],
        )
        for a in d["attempt_log"]
    ]
    if rows:
        lines += ["", table(rows, ("#", "STARTED", "STATUS", "LATENCY", "ERROR / ANSWER"))]
    api.emit(d, "\n".join(lines))


@deliveries_app.command("retry")
@api_command
def deliveries_retry(
    api: Api,
    delivery_id: Annotated[str, typer.Argument(help="Delivery id (dlv_…).")],
) -> None:
    """Send a delivery now: a pending one becomes due, a dead or delivered one again."""
    d = api.call("POST", path=f"/api/deliveries/{quote(delivery_id)}/retry")
    api.emit(d, f"{d['id']}: {d['status']}, due now (attempts so far: {d['attempts']})")


@deliveries_app.command("replay")
@api_command
def deliveries_replay(  # noqa: PLR0917 - typer takes each option as a parameter
    api: Api,
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids to replay.")] = None,
    subscription: Annotated[
        str | None, typer.Option(help="Replay this subscription's deliveries in a window.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Window start (RFC 3339 or epoch).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (RFC 3339 or epoch).")] = None,
    status: Annotated[str | None, typer.Option(help="Only deliveries in this status.")] = None,
    to: Annotated[str | None, typer.Option(help="Send to this subscription instead.")] = None,
    as_new: Annotated[bool, typer.Option("--as-new", help="Give the events fresh ids.")] = False,
) -> None:
    """Deliver stored events again: by id, or a subscription's time window."""
    body: dict[str, Any] = {"as_new": as_new}
    if event_ids:
        body["event_ids"] = event_ids
    for key, value in (
        ("subscription", subscription),
        ("since", since),
        ("until", until),
        ("status", status),
        ("to", to),
    ):
        if value is not None:
            body[key] = value
    answer = api.call("POST", path="/api/replay", body=body)
    text = f"{answer['count']} new deliveries"
    if answer["deliveries"]:
        text += "\n" + _delivery_rows(answer["deliveries"])
    api.emit(answer, text)


@rejected_app.command("list")
@api_command
def rejected_list(
    api: Api,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """Messages that could not become events, with the reason."""
    answer = api.call("GET", path=f"/api/rejected?limit={limit}")
    rows = [
        (r["received_at"], r["topic"], r["reason"], r["detail"][:70]) for r in answer["rejected"]
    ]
    text = table(rows, ("RECEIVED", "TOPIC", "REASON", "DETAIL")) if rows else "nothing rejected"
    api.emit(answer, text)


@subscriptions_app.command("list")
@api_command
def subscriptions_list(
    api: Api,
) -> None:
    """Subscriptions with their health."""
    answer = api.call("GET", path="/api/subscriptions")
    rows = []
    for s in answer["subscriptions"]:
        h = s["health"]
        state = "disabled" if h["disabled"] else "failing" if h["failing_since"] else "ok"
        rows.append(
            (
                s["name"],
                state,
                h["queue_depth"],
                h["in_flight"],
                h["last_success"],
                h["last_failure"],
                s["url"],
                _source(s),
            )
        )
    header = (
        "NAME",
        "STATE",
        "QUEUE",
        "IN FLIGHT",
        "LAST SUCCESS",
        "LAST FAILURE",
        "URL",
        "SOURCE",
    )
    api.emit(answer, table(rows, header) if rows else "no subscriptions")


def _source(subscription: dict[str, Any]) -> str:
    """Where a subscription comes from: the file, or the API (and whose)."""
    source = str(subscription.get("source") or "config")
    account = subscription.get("account")
    return f"{source} ({account})" if account else source


def _toggle_command(action: str, done: str, summary: str) -> Callable[..., None]:
    """The ``subscriptions enable|disable`` command: POST ``action``, then say ``done``."""

    def toggle(
        api: Api,
        name: Annotated[str, typer.Argument(help="Subscription name.")],
    ) -> None:
        path = f"/api/subscriptions/{quote(name)}/{action}"
        answer = api.call("POST", path=path)
        api.emit(answer, f"{name}: {done}")

    toggle.__doc__ = summary
    return subscriptions_app.command(action)(api_command(toggle))


subscriptions_disable = _toggle_command(
    "disable", "disabled", "Stop sending to a subscription; its deliveries wait."
)
subscriptions_enable = _toggle_command("enable", "enabled", "Resume sending to a subscription.")


@subscriptions_app.command("flush")
@api_command
def subscriptions_flush(
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
) -> None:
    """Make every pending delivery of a subscription due now (those in flight go on)."""
    answer = api.call("POST", path=f"/api/subscriptions/{quote(name)}/flush")
    api.emit(answer, f"{name}: {answer['due_now']} pending deliveries due now")


@api_command
def test_endpoint(
    api: Api,
    name: Annotated[str, typer.Argument(help="Subscription name.")],
) -> None:
    """Send a bridge.test event to a subscription now and show the answer."""
    answer = api.call("POST", path=f"/api/subscriptions/{quote(name)}/test")
    lines = [
        f"{name}: {answer['outcome']}"
        + (f" ({answer['status_code']})" if answer.get("status_code") else "")
        + f" in {answer['latency_ms']:.1f} ms",
        f"event {answer['event_id']}, delivery {answer['delivery_id']}",
    ]
    if answer.get("error"):
        lines.append(f"error: {answer['error']}")
    if answer.get("response_excerpt"):
        lines.append(f"answer: {answer['response_excerpt'][:200]}")
    api.emit(answer, "\n".join(lines))
    if answer["outcome"] != "delivered":
        raise typer.Exit(1)


def _state_text(device: dict[str, Any]) -> str:
    state = device.get("state")
    if state is None:
        return "unknown"
    reason = device.get("reason")
    return str(state) + (f" ({reason})" if reason else "")


@api_command
def devices(
    api: Api,
    state: Annotated[str | None, typer.Option(help="online or offline.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only device ids starting with this.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """The device directory: each device's presence, since when, last seen, last event."""
    path = query("/api/devices", state=state, prefix=prefix, limit=limit, cursor=cursor)
    answer = api.call("GET", path=path)
    rows = []
    for d in answer["devices"]:
        last = d.get("last_event") or {}
        rows.append(
            (
                d["device_id"],
                _state_text(d),
                d.get("changed_at"),
                d.get("last_seen"),
                last.get("type"),
                last.get("id"),
            )
        )
    header = ("DEVICE", "STATE", "SINCE", "LAST SEEN", "LAST EVENT", "EVENT ID")
    text = table(rows, header) if rows else "no devices"
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    api.emit(answer, text)


@api_command
def device(
    api: Api,
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    events: Annotated[int, typer.Option(help="How many recent events.")] = 20,
    forget: Annotated[
        bool, typer.Option("--forget", help="Drop it from the directory (events are kept).")
    ] = False,
) -> None:
    """One device: its presence and recent events with each delivery's status."""
    if forget:
        answer = api.call("DELETE", path=f"/api/devices/{quote(device_id)}")
        api.emit(answer, f"{device_id}: forgotten")
        return
    path = f"/api/devices/{quote(device_id)}?events={events}"
    d = api.call("GET", path=path)
    lines = [
        f"device     {d['device_id']}",
        f"state      {_state_text(d)}",
        f"since      {d.get('changed_at') or '-'}",
        f"last seen  {d.get('last_seen') or '-'}",
    ]
    rows = [
        (
            e["received_at"],
            e["type"],
            e["id"],
            ", ".join(f"{x['subscription']}: {_status_text(x)}" for x in e["deliveries"])
            or "not delivered",
        )
        for e in d["events"]
    ]
    if rows:
        lines += ["", table(rows, ("RECEIVED", "TYPE", "EVENT", "DELIVERIES"))]
    api.emit(d, "\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``hookbridge`` command line."""
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(rejected_app, name="rejected")
    app.add_typer(subscriptions_app, name="subscriptions")
    app.command("test-endpoint")(test_endpoint)
    app.command("devices")(devices)
    app.command("device")(device)
