"""Reloading the configuration of a running bridge (SIGHUP, ``POST /api/reload``).

A reload is all or nothing. The new file is validated first, and what the
switch needs (the stored subscription states, the new router and normaliser)
is read and built before anything switches; then every
difference from the running configuration is sorted into what a running
bridge can adopt (subscriptions, and with them where presence transitions
are routed; retry, limits, retention, security, the API token, the declared
event types and their data schemas, the accounts' subscription limit and secret
grace) and what only a restart changes (the
broker connection, the store, the listeners, rules, telemetry topics and
profiles, inbound webhooks, presence settings, and any section this module
does not know). When anything of the second kind differs, nothing is applied and
the answer names each part that needs a restart; otherwise everything that
differs is applied, and the answer says which sections changed.

The subscriptions made through the API (:mod:`bridge.admin.accounts.managed`)
change through the same switch (:func:`switch_subscriptions`), one switch at a
time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bridge.config import Settings, load_config
from bridge.config.advice import config_warnings
from bridge.core.normalise import Normaliser
from bridge.core.route import Router
from bridge.delivery.auth import secret_values
from bridge.errors import ConfigError, StoreError
from bridge.observe.logs import get_logger, register_secrets
from bridge.store.rows import SubscriptionState

if TYPE_CHECKING:
    from bridge.admin.parts import BridgeParts

__all__ = ["RELOADABLE", "ReloadResult", "changed_parts", "reload_bridge", "switch_subscriptions"]

log = get_logger("hookbridge.reload")

RELOADABLE: dict[str, frozenset[str] | None] = {
    "subscriptions": None,
    "retry": None,
    "limits": None,
    "retention": None,
    "security": None,
    "event_types": None,
    "api": frozenset({"token"}),
    "accounts": frozenset({"max_subscriptions", "secret_grace"}),
}
"""Sections a reload applies: ``None`` for all of one, else the keys of it that it applies."""


@dataclass(frozen=True, slots=True)
class ReloadResult:
    applied: bool
    problems: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # what differed and was applied


def changed_parts(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """(parts a reload applies, parts only a restart changes) that differ, as dotted names."""
    applied: list[str] = []
    restart: list[str] = []
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        keys = RELOADABLE.get(name, frozenset())
        if keys is None:
            applied.append(name)
            continue
        if not isinstance(before, BaseModel) or not isinstance(after, BaseModel):
            restart.append(name)
            continue
        for key in type(before).model_fields:
            if getattr(before, key) != getattr(after, key):
                (applied if key in keys else restart).append(f"{name}.{key}")
    return applied, restart


async def reload_bridge(bridge: BridgeParts) -> ReloadResult:
    """Re-read ``bridge.config_path``; apply all of it, or nothing (see the module docstring).

    The subscriptions made through the API stay: they are merged into what the file
    says (a name the file gives that one of them holds is refused, naming both).
    """
    if bridge.config_path is None:
        return ReloadResult(False, ["this bridge was not started from a configuration file"])
    try:
        new = load_config(bridge.config_path)
    except ConfigError as exc:
        log.error("reload refused: the configuration is invalid", problems=exc.problems)
        return ReloadResult(False, exc.problems)
    for warning in config_warnings(new):  # what check-config warns about
        log.warning("configuration warning", warning=warning)
    async with bridge.managed.lock:
        try:
            new = bridge.managed.merged(new)
        except ConfigError as exc:
            log.error("reload refused", problems=exc.problems)
            return ReloadResult(False, exc.problems)
        return await _reload(bridge, new)


async def _reload(bridge: BridgeParts, new: Settings) -> ReloadResult:
    old = bridge.settings
    sections, restart = changed_parts(old, new)
    if restart:
        log.error("reload refused: these parts change only on restart", parts=restart)
        return ReloadResult(
            False,
            [f"{part} changes only on restart" for part in restart],
            restart_needed=restart,
        )
    # Everything the switch needs is read and built first: a store that cannot be
    # read, or a part that cannot be built, leaves the old configuration running in full.
    try:
        prepared = await _prepare(bridge, new, bridge.managed.owners)
    except (StoreError, ConfigError) as exc:
        log.error("reload refused: nothing was changed", error=str(exc))
        return ReloadResult(False, [f"nothing was changed: {exc}"])
    await _switch(bridge, new, prepared)
    before = {s.name: s for s in old.subscriptions}
    after = {s.name: s for s in new.subscriptions}
    result = ReloadResult(
        True,
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
        sections=sections,
    )
    log.info(
        "configuration reloaded",
        sections=sections,
        added=result.added,
        removed=result.removed,
        changed=result.changed,
    )
    return result


async def switch_subscriptions(
    bridge: BridgeParts, new: Settings, owners: Mapping[str, str]
) -> None:
    """Adopt ``new``, which differs from the running settings in its subscriptions only
    (the subscriptions made through the API changed), through the same switch as a
    reload; ``owners`` names the account of each that belongs to one. The caller holds
    ``bridge.managed.lock``. Raises (and changes nothing) when the store cannot be read."""
    await _switch(bridge, new, await _prepare(bridge, new, owners))


@dataclass(frozen=True, slots=True)
class _Prepared:
    states: dict[str, SubscriptionState]
    router: Router
    normaliser: Normaliser


async def _prepare(bridge: BridgeParts, new: Settings, owners: Mapping[str, str]) -> _Prepared:
    old = bridge.settings
    states = await bridge.store.subscription_states()
    router = Router(new.subscriptions, owners)
    normaliser = bridge.normaliser
    if new.limits != old.limits or new.event_types != old.event_types:
        # Rules, telemetry topics and profiles are equal here: the topics subscribed stay.
        normaliser = Normaliser(new, source=f"mqtt://{new.mqtt.host}:{new.mqtt.port}")
    return _Prepared(states, router, normaliser)


async def _switch(bridge: BridgeParts, new: Settings, prepared: _Prepared) -> None:
    # From here on nothing can fail: every part switches.
    # Secrets first: from here on a new secret may reach a request or an answer.
    register_secrets(secret_values(new))
    bridge.settings = new
    bridge.router = prepared.router
    bridge.normaliser = prepared.normaliser
    bridge.committer.reconfigure(
        normaliser=prepared.normaliser,
        router=prepared.router,
        lease=new.store.lease,
        max_payload=new.limits.max_payload,
    )
    bridge.sender.reconfigure(new.subscriptions, settings=new)
    bridge.retention.reconfigure(new.retention)
    if bridge.presence is not None:
        bridge.presence.reroute(prepared.router)
    await bridge.dispatcher.reconfigure(new, prepared.states)
