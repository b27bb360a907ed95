"""Operator commands that talk to a running bridge through its admin API.

``hookbridge deliveries list|show|retry|replay``, ``hookbridge rejected list``,
``hookbridge test-endpoint NAME``, ``hookbridge subscriptions
list|enable|disable``, and the device directory: ``hookbridge devices`` and
``hookbridge device ID``. Where the API is: ``--url``/``--token``, else the
environment (``HOOKBRIDGE_URL``, ``HOOKBRIDGE_ADMIN_TOKEN``), else ``api.listen``
and ``api.token`` of the configuration file given with ``-c``. Answers are
tables on a terminal and JSON with ``--json``; a failure is one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.config import load_api_settings
from bridge.errors import ApiError, ConfigError

__all__ = [
    "ApiClient",
    "ConfigOption",
    "JsonOption",
    "TokenOption",
    "UrlOption",
    "call_api",
    "emit",
    "query",
    "register",
    "table",
]

_TIMEOUT = 60.0  # a test ping waits for the endpoint's own timeout

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Admin API base URL (env HOOKBRIDGE_URL).")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="Admin token (env HOOKBRIDGE_ADMIN_TOKEN).")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Take api.listen and api.token from here.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


@dataclass(frozen=True)
class ApiClient:
    """A small synchronous client of the admin API; every failure is an ApiError."""

    base_url: str
    token: str | None

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r})"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own bridge
            self.base_url.rstrip("/") + path, data=data, method=method
        )
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise ApiError(f"cannot reach the bridge at {self.base_url}: {reason}") from None
        except (TimeoutError, OSError) as exc:
            raise ApiError(f"cannot reach the bridge at {self.base_url}: {exc}") from None
        except ValueError:
            raise ApiError("the bridge answered something that is not JSON") from None


def _http_error(exc: urllib.error.HTTPError) -> str:
    if exc.code == 401:
        return "the bridge refused the admin token (401); check --token or api.token"
    try:
        message = json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    return f"{message} ({exc.code})"


def _client(url: str | None, token: str | None, config: Path | None) -> ApiClient:
    url = url or os.environ.get("HOOKBRIDGE_URL") or None
    token = token or os.environ.get("HOOKBRIDGE_ADMIN_TOKEN") or None
    if config is not None and (url is None or token is None):
        try:
            api = load_api_settings(config)  # only the api section: no webhook secrets needed
        except ConfigError as exc:
            raise ApiError(f"{exc}: {'; '.join(exc.problems)}") from None
        if url is None:
            if api.listen is None:
                raise ApiError("the configuration has no api.listen: the admin API is off")
            host, _, port = api.listen.rpartition(":")
            host = "127.0.0.1" if host in {"0.0.0.0", "::", "[::]"} else host  # noqa: S104
            url = f"http://{host}:{port}"
        if token is None and api.token is not None:
            token = api.token.get_secret_value()
    if url is None:
        raise ApiError("where is the bridge? give --url, HOOKBRIDGE_URL or -c config.yaml")
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"the admin API URL must start with http:// or https://, not {url!r}")
    return ApiClient(url, token)


def query(path: str, **params: str | int | None) -> str:
    """``path`` with the given query parameters, those that are None left out."""
    given = {name: str(value) for name, value in params.items() if value is not None}
    return f"{path}?{urllib.parse.urlencode(given)}" if given else path


def call_api(
    url: str | None,
    token: str | None,
    config: Path | None,
    method: str,
    *,
    path: str,
    body: dict[str, Any] | None = None,
) -> Any:
    try:
        return _client(url, token, config).call(method, path, body)
    except ApiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) if c is not None else "-" for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def emit(as_json: bool, answer: Any, text: str) -> None:
    typer.echo(json.dumps(answer, indent=2) if as_json else text)


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
            d["created_at"],
        )
        for d in deliveries
    ]
    header = ("DELIVERY", "SUBSCRIPTION", "TYPE", "STATUS", "ATTEMPTS", "LAST", "CREATED")
    return table(rows, header) if rows else "no deliveries"


deliveries_app = typer.Typer(help="Deliveries of the running bridge.", no_args_is_help=True)
rejected_app = typer.Typer(help="Messages the running bridge rejected.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions of the running bridge.", no_args_is_help=True)


@deliveries_app.command("list")
def deliveries_list(  # noqa: PLR0917 - typer takes each option as a parameter
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time or epoch seconds.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
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
    answer = call_api(url, token, config, "GET", path=path)
    text = _delivery_rows(answer["deliveries"])
    if answer.get("next_cursor"):
        text += f"\nmore: --cursor {answer['next_cursor']}"
    emit(as_json, answer, text)


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@deliveries_app.command("show")
def deliveries_show(
    delivery_id: Annotated[str, typer.Argument(help="Delivery id (dlv_…).")],
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One delivery with its event and every attempt."""
    d = call_api(url, token, config, "GET", path=f"/api/deliveries/{_quote(delivery_id)}")
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
    emit(as_json, d, "\n".join(lines))


@deliveries_app.command("retry")
def deliveries_retry(
    delivery_id: Annotated[str, typer.Argument(help="Delivery id (dlv_…).")],
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a dead or delivered delivery again, now."""
    d = call_api(url, token, config, "POST", path=f"/api/deliveries/{_quote(delivery_id)}/retry")
    emit(as_json, d, f"{d['id']}: {d['status']}, due now")


@deliveries_app.command("replay")
def deliveries_replay(  # noqa: PLR0917 - typer takes each option as a parameter
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids to replay.")] = None,
    subscription: Annotated[
        str | None, typer.Option(help="Replay this subscription's deliveries in a window.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Window start (RFC 3339 or epoch).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (RFC 3339 or epoch).")] = None,
    status: Annotated[str | None, typer.Option(help="Only deliveries in this status.")] = None,
    to: Annotated[str | None, typer.Option(help="Send to this subscription instead.")] = None,
    as_new: Annotated[bool, typer.Option("--as-new", help="Give the events fresh ids.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
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
    answer = call_api(url, token, config, "POST", path="/api/replay", body=body)
    text = f"{answer['count']} new deliveries"
    if answer["deliveries"]:
        text += "\n" + _delivery_rows(answer["deliveries"])
    emit(as_json, answer, text)


@rejected_app.command("list")
def rejected_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Messages that could not become events, with the reason."""
    answer = call_api(url, token, config, "GET", path=f"/api/rejected?limit={limit}")
    rows = [
        (r["received_at"], r["topic"], r["reason"], r["detail"][:70]) for r in answer["rejected"]
    ]
    text = table(rows, ("RECEIVED", "TOPIC", "REASON", "DETAIL")) if rows else "nothing rejected"
    emit(as_json, answer, text)


@subscriptions_app.command("list")
def subscriptions_list(
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Subscriptions with their health."""
    answer = call_api(url, token, config, "GET", path="/api/subscriptions")
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
            )
        )
    header = ("NAME", "STATE", "QUEUE", "IN FLIGHT", "LAST SUCCESS", "LAST FAILURE", "URL")
    emit(as_json, answer, table(rows, header) if rows else "no subscriptions")


def _toggle_command(action: str, done: str, summary: str) -> Callable[..., None]:
    """The ``subscriptions enable|disable`` command: POST ``action``, then say ``done``."""

    def toggle(
        name: Annotated[str, typer.Argument(help="Subscription name.")],
        url: UrlOption = None,
        token: TokenOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        path = f"/api/subscriptions/{_quote(name)}/{action}"
        answer = call_api(url, token, config, "POST", path=path)
        emit(as_json, answer, f"{name}: {done}")

    toggle.__doc__ = summary
    return subscriptions_app.command(action)(toggle)


subscriptions_disable = _toggle_command(
    "disable", "disabled", "Stop sending to a subscription; its deliveries wait."
)
subscriptions_enable = _toggle_command("enable", "enabled", "Resume sending to a subscription.")


def test_endpoint(
    name: Annotated[str, typer.Argument(help="Subscription name.")],
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a bridge.test event to a subscription now and show the answer."""
    answer = call_api(url, token, config, "POST", path=f"/api/subscriptions/{_quote(name)}/test")
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
    emit(as_json, answer, "\n".join(lines))
    if answer["outcome"] != "delivered":
        raise typer.Exit(1)


def _state_text(device: dict[str, Any]) -> str:
    state = device.get("state")
    if state is None:
        return "unknown"
    reason = device.get("reason")
    return str(state) + (f" ({reason})" if reason else "")


def devices(  # noqa: PLR0917 - typer takes each option as a parameter
    state: Annotated[str | None, typer.Option(help="online or offline.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only device ids starting with this.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The device directory: each device's presence, since when, last seen, last event."""
    path = query("/api/devices", state=state, prefix=prefix, limit=limit, cursor=cursor)
    answer = call_api(url, token, config, "GET", path=path)
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
    emit(as_json, answer, text)


def device(  # noqa: PLR0917 - typer takes each option as a parameter
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    events: Annotated[int, typer.Option(help="How many recent events.")] = 20,
    forget: Annotated[
        bool, typer.Option("--forget", help="Drop it from the directory (events are kept).")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One device: its presence and recent events with each delivery's status."""
    if forget:
        answer = call_api(url, token, config, "DELETE", path=f"/api/devices/{_quote(device_id)}")
        emit(as_json, answer, f"{device_id}: forgotten")
        return
    path = f"/api/devices/{_quote(device_id)}?events={events}"
    d = call_api(url, token, config, "GET", path=path)
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
    emit(as_json, d, "\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``hookbridge`` command line."""
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(rejected_app, name="rejected")
    app.add_typer(subscriptions_app, name="subscriptions")
    app.command("test-endpoint")(test_endpoint)
    app.command("devices")(devices)
    app.command("device")(device)
