"""The admin API as the operator commands reach it, and the options they all take.

Where the API is: ``--url``/``--token``, else the environment (``HOOKBRIDGE_URL``,
``HOOKBRIDGE_ADMIN_TOKEN``), else ``api.listen`` and ``api.token`` of the configuration
file given with ``-c``. Answers are tables on a terminal and JSON with ``--json``; a
failure is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec

import typer

from bridge.config import load_api_settings
from bridge.errors import ApiError, ConfigError

__all__ = [
    "Api",
    "ApiClient",
    "api_command",
    "call_api",
    "emit",
    "query",
    "quote",
    "table",
]

Body = dict[str, Any] | None
Headers = dict[str, str] | None

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

    def call(self, method: str, path: str, body: Body = None, headers: Headers = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own bridge
            self.base_url.rstrip("/") + path, data=data, method=method
        )
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(_http_error(exc, self.token)) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise ApiError(f"cannot reach the bridge at {self.base_url}: {reason}") from None
        except (TimeoutError, OSError) as exc:
            raise ApiError(f"cannot reach the bridge at {self.base_url}: {exc}") from None
        except ValueError:
            raise ApiError("the bridge answered something that is not JSON") from None


def _http_error(exc: urllib.error.HTTPError, token: str | None) -> str:
    try:
        message = json.loads(exc.read()).get("error") or exc.reason
    except (ValueError, AttributeError, OSError):
        message = exc.reason
    if exc.code == 401 and "api.token" not in str(message):
        if token is None:
            return (
                "the bridge needs its admin token and none was given: pass --token, set "
                "HOOKBRIDGE_ADMIN_TOKEN, or give -c the configuration that sets api.token (401)"
            )
        return "the bridge refused the admin token (401); check --token or api.token"
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
    headers: dict[str, str] | None = None,
) -> Any:
    try:
        return _client(url, token, config).call(method, path, body, headers)
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


def quote(value: str) -> str:
    """``value`` as one segment of an API path."""
    return urllib.parse.quote(value, safe="")


@dataclass(frozen=True)
class Api:
    """What the shared options ``--url``, ``--token``, ``-c`` and ``--json`` say: where the
    admin API is, and how its answers print."""

    url: str | None
    token: str | None = field(repr=False)  # a secret: never in a repr
    config: Path | None
    as_json: bool

    def call(self, method: str, path: str, body: Body = None, headers: Headers = None) -> Any:
        return call_api(
            self.url, self.token, self.config, method, path=path, body=body, headers=headers
        )

    def emit(self, answer: Any, text: str) -> None:
        emit(self.as_json, answer, text)


def _api(
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> Api:
    return Api(url, token, config, as_json)


_API_OPTIONS = tuple(inspect.signature(_api, eval_str=True).parameters.values())

P = ParamSpec("P")


def api_command(command: Callable[Concatenate[Api, P], None]) -> Callable[..., None]:
    """``command(api, …)`` as typer sees it: its own parameters, then the shared options,
    which become its ``api``.

    Typer reads a command's options from its signature, so the shared ones are added to
    the signature it reads (the way click shares options with a decorator).
    """
    own = tuple(inspect.signature(command, eval_str=True).parameters.values())[1:]

    @functools.wraps(command)
    def run(**given: Any) -> None:
        api = _api(**{option.name: given.pop(option.name) for option in _API_OPTIONS})
        command(api, **given)  # type: ignore[call-arg]

    run.__signature__ = inspect.Signature([*own, *_API_OPTIONS])  # type: ignore[attr-defined]
    return run
