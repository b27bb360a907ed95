"""Warnings about a valid configuration: what is legal but probably not what was meant.

Pure and without DNS lookups: a warning judges only what the file says.
``check-config`` prints these after its summary (and still exits 0), ``run``
logs them at warning level when it starts, and a reload logs them too. A file
with errors gets its warnings too (:func:`document_warnings`): worked out from
the raw document, for each part of it that is valid on its own.
"""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

from pydantic import ValidationError

from bridge.config.problems import did_you_mean
from bridge.core.addresses import non_public_label
from bridge.core.events import CATALOGUE
from bridge.core.settings.models import Settings, Subscription
from bridge.core.signing import SECRET_PREFIX

__all__ = ["config_warnings", "document_warnings", "private_target_label"]

_GUARD_KEY = "security.allow_private_targets"


def config_warnings(settings: Settings) -> list[str]:
    """Every warning about ``settings``, each as ``place: what and why``."""
    warnings: list[str] = []
    known = [*CATALOGUE, *(t.name for t in settings.event_types)]
    if not settings.subscriptions:
        warnings.append("subscriptions: none configured; events are stored but delivered nowhere")
    guard_off = settings.security.allow_private_targets
    for index, sub in enumerate(settings.subscriptions):
        warnings.extend(_subscription_warnings(f"subscriptions[{index}]", sub, known, guard_off))
    warnings.extend(_telemetry_warnings(settings))
    return warnings


def document_warnings(document: object) -> list[str]:
    """The warnings of a configuration that has errors, from its raw (interpolated)
    document: each subscription that is valid on its own is judged as
    :func:`config_warnings` judges it, at its own place; the rest is left to the errors."""
    if not isinstance(document, dict):
        return []
    declared = [
        entry.get("name") for entry in _entries(document, "event_types") if isinstance(entry, dict)
    ]
    known = [*CATALOGUE, *(name for name in declared if isinstance(name, str))]
    security = document.get("security")
    guard_off = isinstance(security, dict) and security.get("allow_private_targets") is True
    warnings: list[str] = []
    for index, entry in enumerate(_entries(document, "subscriptions")):
        try:
            sub = Subscription.model_validate(entry)
        except ValidationError:
            continue  # its errors say what is wrong with it
        warnings.extend(_subscription_warnings(f"subscriptions[{index}]", sub, known, guard_off))
    return warnings


def _entries(document: dict[str, object], section: str) -> list[object]:
    entries = document.get(section)
    return entries if isinstance(entries, list) else []


def _subscription_warnings(
    place: str, sub: Subscription, known: list[str], guard_off: bool
) -> list[str]:
    warnings = _glob_warnings(place, sub, known)
    if not (guard_off or _guard_off(sub)):
        warnings.extend(_private_target_warnings(place, sub))
    if not sub.secrets:
        effect = (
            "and its receiver's answers are published to devices unchecked"
            if sub.mode == "pipe"
            else "and a receiver cannot tell them from anyone's"
        )
        warnings.append(
            f"{place}.secret: not set, so its webhooks go unsigned {effect}; "
            "set a secret (make one with: echo whsec_$(openssl rand -base64 32))"
        )
    elif any(not s.get_secret_value().startswith(SECRET_PREFIX) for s in sub.secrets):
        warnings.append(
            f"{place}.secret: not in the form whsec_<base64>, so it signs with its raw "
            "bytes; Standard Webhooks verifiers expect whsec_<base64> "
            "(make one with: echo whsec_$(openssl rand -base64 32))"
        )
    return warnings


def _telemetry_warnings(settings: Settings) -> list[str]:
    """A telemetry topic that takes the messages of a profile's topic (rules come first)."""
    from bridge.core.profiles import load_profiles
    from bridge.core.topics import TopicPattern
    from bridge.errors import ConfigError

    if not settings.telemetry.topics:
        return []
    try:
        profiles = load_profiles(settings.profiles)
    except ConfigError:
        return []  # reported as a problem where profiles are checked
    taken = [(p.name, f) for p in profiles for f in p.topic_filters()]
    warnings: list[str] = []
    for index, topic in enumerate(settings.telemetry.topics):
        pattern = TopicPattern(topic)
        for name, topic_filter in taken:
            sample = [
                level if level not in {"+", "#"} else "x" for level in topic_filter.split("/")
            ]
            if pattern.match(sample) is not None:
                warnings.append(
                    f"telemetry.topics[{index}]: '{topic}' also matches {topic_filter} of the "
                    f"{name} profile; its messages become telemetry.reported and the profile "
                    "no longer reads them"
                )
                break
    return warnings


def private_target_label(url: str) -> tuple[str, str] | None:
    """``(host, "a loopback")`` when ``url`` names a non-public host literally, else None.

    Only IP literals and ``localhost`` names are judged: a name is resolved
    only at send time, where the guard judges every address it resolves to.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return host, "a loopback"
    try:
        label = non_public_label(host)
    except ValueError:
        return None  # a name, not an address
    return (host, label) if label is not None else None


def _guard_off(sub: Subscription) -> bool:
    # The per-subscription switch, where the configuration has it.
    return bool(getattr(sub, "allow_private_target", False))


def _private_target_warnings(place: str, sub: Subscription) -> list[str]:
    warnings: list[str] = []
    urls = [(f"{place}.url", sub.url)]
    token_url = getattr(sub.auth, "token_url", None)
    if isinstance(token_url, str):
        urls.append((f"{place}.auth.token_url", token_url))
    for where, url in urls:
        found = private_target_label(url)
        if found is not None:
            host, label = found
            warnings.append(
                f"{where}: {host} is {label} address, and deliveries to it are refused while "
                f"{_GUARD_KEY} is false; for a receiver on this machine or network set "
                f"{_GUARD_KEY}: true"
            )
    return warnings


def _glob_warnings(place: str, sub: Subscription, known: list[str]) -> list[str]:
    families = sorted({f"{name.split('.', 1)[0]}.*" for name in known})
    warnings: list[str] = []
    for index, glob in enumerate(sub.events):
        if any(fnmatch.fnmatchcase(name, glob) for name in known):
            continue
        hint = did_you_mean(glob, [*known, *families])
        warnings.append(
            f"{place}.events[{index}]: '{glob}' matches no event type{hint}; "
            f"known: {', '.join(families)} or an exact type (hookbridge events schema)"
        )
    return warnings
