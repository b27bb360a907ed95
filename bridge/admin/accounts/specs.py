"""A subscription as the API takes it: read, checked like YAML, split into fields and secrets.

The body of ``POST /api/subscriptions`` (and of a ``PATCH``, merged into what is
stored) holds the keys a subscription has in the configuration file, and is
checked by the same model, each problem with its place (``url: …``,
``events[0]: …``). On top of what a file may say, the API refuses what only
warns in a file: an event glob that matches no type, and a private target while
the target guard is on. An account's token may not use what reaches into the
bridge's own host or broker: files (``ca_file``, ``client_cert``,
``client_key``), a ``proxy``, a ``filter_plugin`` or ``mode: pipe``.

What is stored is split in two: the fields without any secret (``spec``), and the
secrets (signing secrets with the time the grace of a rotated one ends, header
values, receiver credentials), which the store keeps sealed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from pydantic import ValidationError

from bridge.admin.accounts.principals import Principal
from bridge.config import Settings, Subscription
from bridge.config.advice import config_warnings
from bridge.config.problems import did_you_mean, validation_problems
from bridge.core.events import CATALOGUE
from bridge.core.formats import FORMATS
from bridge.core.signing import SECRET_PREFIX
from bridge.delivery.targets import target_refusal
from bridge.errors import OperatorError
from bridge.plugin import filter_for

__all__ = [
    "ACCOUNT_REFUSED",
    "MAX_BODY",
    "SECRET_KEYS",
    "Secrets",
    "build",
    "check_targets",
    "event_types_for",
    "join",
    "live_signing",
    "read_body",
    "rotated",
    "secret_hint",
    "secret_values",
    "split",
    "warnings_for",
]

MAX_BODY = 64 * 1024
"""The largest body the settings API reads."""

SECRET_KEYS = ("secret", "headers", "auth")
"""Keys whose values (all or part) are secrets."""

_AUTH_SECRETS = ("token", "password", "client_secret")
_MAX_SIGNING = 5  # secrets signing at once, the newest first: bounds the header

# What an account may not set: it reads the bridge's own files, goes through its own
# proxy or plugins, or publishes on its broker.
ACCOUNT_REFUSED = (
    "ca_file",
    "client_cert",
    "client_key",
    "proxy",
    "filter_plugin",
    "reply_topic",
    "response_topics",
    "reply_errors",
    "reply_max_age",
    "pipe_max_reply",
)

Secrets = dict[str, Any]
"""``{"secret": [{"value", "expires_at"}], "headers": {name: value}, "auth": {key: value}}``."""


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a request carries, refused over :data:`MAX_BODY` (413)."""
    too_large = web.HTTPRequestEntityTooLarge(
        max_size=MAX_BODY,
        actual_size=request.content_length or MAX_BODY + 1,
        reason=f"the body is larger than {MAX_BODY // 1024} KB",
    )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large
    raw = b""
    for _ in range(MAX_BODY // 1024 + 2):  # chunks of at least a byte until the end
        chunk = await request.content.read(MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
        if len(raw) > MAX_BODY:
            raise too_large
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise OperatorError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OperatorError("the body must be a JSON object")
    return body


def event_types_for(settings: Settings, who: Principal) -> list[str]:
    """The types a subscription of ``who`` can receive: the devices' (catalogue and
    declared) for an account; the bridge's own alerts too for the operator."""
    declared = [t.name for t in settings.event_types]
    catalogue = [t for t in CATALOGUE if who.operator or not t.startswith("bridge.")]
    return [*catalogue, *declared]


def _refused_keys(doc: Mapping[str, Any], who: Principal) -> list[str]:
    if who.operator:
        return []
    problems = [
        f"{key}: not available to an account token (it reaches into the bridge's own host)"
        for key in ACCOUNT_REFUSED
        if doc.get(key) is not None
    ]
    if doc.get("mode", "push") != "push":
        problems.append("mode: an account's subscriptions are push subscriptions")
    return problems


def _glob_problems(sub: Subscription, known: list[str]) -> list[str]:
    problems = []
    for index, glob in enumerate(sub.events):
        if not any(fnmatch.fnmatchcase(name, glob) for name in known):
            hint = did_you_mean(glob, known)
            problems.append(f"events[{index}]: '{glob}' matches no event type{hint}")
    return problems


def _plugin_problems(sub: Subscription) -> list[str]:
    problems = []
    if sub.format not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        problems.append(
            f"format: unknown format{did_you_mean(sub.format, FORMATS)}; known: {known}"
        )
    if sub.filter_plugin is not None and filter_for(sub.filter_plugin) is None:
        problems.append("filter_plugin: no installed plugin provides this filter")
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(sub, key)
        if path is not None and not Path(path).is_file():
            problems.append(f"{key}: no such file on the bridge's host")
    return problems


def build(doc: Mapping[str, Any], *, settings: Settings, who: Principal) -> Subscription:
    """The subscription ``doc`` describes, checked as the API checks it; every problem at
    once, each with its place, in one :class:`OperatorError` (400)."""
    problems = _refused_keys(doc, who)
    sub: Subscription | None = None
    try:
        sub = Subscription.model_validate(dict(doc))
    except ValidationError as exc:
        problems += validation_problems(Subscription, exc)
    if sub is not None:
        problems += _glob_problems(sub, event_types_for(settings, who))
        problems += _plugin_problems(sub)
    if problems or sub is None:
        raise OperatorError("; ".join(problems))
    return sub


def _urls(sub: Subscription) -> list[tuple[str, str]]:
    found = [("url", sub.url)]
    token_url = getattr(sub.auth, "token_url", None)
    if isinstance(token_url, str):
        found.append(("auth.token_url", token_url))
    return found


async def check_targets(sub: Subscription, settings: Settings) -> None:
    """While the target guard is on, a URL whose host is (or resolves to) a private,
    loopback, link-local or otherwise non-public address is refused here, before it is
    saved; a name that does not resolve yet is left to the guard at send time."""
    if settings.security.allow_private_targets:
        return
    loop = asyncio.get_running_loop()
    for place, url in _urls(sub):
        host = urlsplit(url).hostname or ""
        try:
            addresses: Iterable[str] = [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 5.0
                )
            except (OSError, TimeoutError):
                continue
            addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            reason = target_refusal(address)
            if reason is not None:
                raise OperatorError(f"{place}: {host}: {reason}")


def warnings_for(sub: Subscription, settings: Settings) -> list[str]:
    """What ``check-config`` would warn about this subscription (a secret not in
    ``whsec_`` form…), with places as the API names them."""
    alone = settings.model_copy(update={"subscriptions": [sub]})
    prefix = "subscriptions[0]."
    return [w.removeprefix(prefix) for w in config_warnings(alone) if w.startswith(prefix)]


def secret_hint(secret: str | None) -> str | None:
    """What the API shows of a secret: its prefix and last four characters."""
    if not secret:
        return None
    head = SECRET_PREFIX if secret.startswith(SECRET_PREFIX) else ""
    return f"{head}…{secret[-4:]}" if len(secret) > len(head) + 8 else f"{head}…"


def split(sub: Subscription) -> tuple[dict[str, Any], Secrets]:
    """(the fields without secrets, the secrets) of ``sub``."""
    spec = sub.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for key in ("secret", "headers"):
        spec.pop(key, None)
    auth: dict[str, Any] = {}
    if isinstance(spec.get("auth"), dict):
        for key in _AUTH_SECRETS:
            spec["auth"].pop(key, None)
        config = sub.auth
        auth = {
            key: getattr(config, key).get_secret_value()
            for key in _AUTH_SECRETS
            if getattr(config, key, None) is not None
        }
    signing: list[dict[str, Any]] = [
        {"value": s.get_secret_value(), "expires_at": None} for s in sub.secrets
    ]
    headers = {name: value.get_secret_value() for name, value in sub.headers.items()}
    return spec, {"secret": signing, "headers": headers, "auth": auth}


def rotated(secrets: Secrets, new: str, *, grace_until: float, now: float) -> Secrets:
    """``secrets`` with ``new`` signing first; the secrets that signed until now go on
    signing beside it until ``grace_until`` (those already in a grace keep theirs)."""
    kept: list[dict[str, Any]] = []
    for entry in secrets.get("secret", []):
        ends = entry.get("expires_at")
        if ends is None:
            kept.append({"value": entry["value"], "expires_at": grace_until})
        elif ends > now:
            kept.append(dict(entry))
    signing = [{"value": new, "expires_at": None}, *kept[: _MAX_SIGNING - 1]]
    return {**secrets, "secret": signing}


def live_signing(secrets: Secrets, *, now: float) -> list[dict[str, Any]]:
    """The signing secrets still in force at ``now``, with their grace."""
    return [
        dict(entry)
        for entry in secrets.get("secret", [])
        if entry.get("expires_at") is None or entry["expires_at"] > now
    ]


def secret_values(secrets: Secrets) -> list[str]:
    """Every secret value of ``secrets``, for the log scrubber."""
    values = [entry["value"] for entry in secrets.get("secret", [])]
    values += [*secrets.get("headers", {}).values(), *secrets.get("auth", {}).values()]
    return [value for value in values if isinstance(value, str)]


def join(spec: Mapping[str, Any], secrets: Secrets, *, now: float) -> dict[str, Any]:
    """The whole document again: fields and the secrets still in force at ``now`` (a
    rotated secret stops signing when its grace ends)."""
    doc = dict(spec)
    live = [entry["value"] for entry in live_signing(secrets, now=now)]
    if live:
        doc["secret"] = live if len(live) > 1 else live[0]
    if secrets.get("headers"):
        doc["headers"] = dict(secrets["headers"])
    if isinstance(doc.get("auth"), dict):
        doc["auth"] = {**doc["auth"], **secrets.get("auth", {})}
    return doc
