"""The subscriptions made through the API, running beside those of the configuration file.

They live in the store (:mod:`bridge.store.accounts`), so every instance sharing
it sees them. Each instance keeps the running set in step with the store:

- at start (:meth:`ManagedSubscriptions.open`), before the dispatcher builds its
  lanes: the store's secrets are opened with ``store.encryption_key`` (a store
  that holds sealed secrets without a key, or with the wrong one, stops the
  start naming the key), rows sealed with an older key are sealed again with the
  current one, and a name the file gives that the API holds stops the start,
  naming both;
- then (:meth:`ManagedSubscriptions.run`) it reads the store's change counter
  every :data:`POLL` seconds (one small read) and, when it moved, or when a
  rotated secret's grace ended, applies the whole set again through the switch
  a reload uses (:func:`bridge.admin.reload.switch_subscriptions`). A change made
  on this instance is applied at once (:meth:`refresh`), before its answer.

A subscription removed here (deleted, on any instance) gets no new delivery:
its lane retires, and what this instance stored for it before it knew ends dead
(``deleted``), like the pending deliveries the delete itself ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bridge.admin.accounts import specs
from bridge.admin.reload import switch_subscriptions
from bridge.config import Settings, Subscription
from bridge.errors import ConfigError, StoreError
from bridge.observe.logs import get_logger
from bridge.store.accounts import StoredSubscription
from bridge.store.sealing import Sealer

if TYPE_CHECKING:
    from bridge.admin.parts import BridgeParts

__all__ = ["POLL", "ManagedSubscriptions"]

log = get_logger("hookbridge.managed")

POLL = 0.5
"""Seconds between two reads of the store's change counter: a change made on another
instance is running here within about this long (the documented bound is 2 s)."""


class ManagedSubscriptions:
    """The running set of API subscriptions of one bridge instance."""

    def __init__(self, bridge: BridgeParts) -> None:
        self._bridge = bridge
        self.sealer = Sealer(bridge.settings.store)
        self.rows: dict[str, StoredSubscription] = {}
        self.secrets: dict[str, specs.Secrets] = {}
        self._owners: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._version: int | None = None
        self._next_expiry: float | None = None
        self._stop = asyncio.Event()
        self.applied = 0  # how many times the set was applied (tests read it)

    # -- what the API and a reload ask ----------------------------------------------------

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock

    @property
    def owners(self) -> dict[str, str]:
        """Subscription name -> its account, for the API subscriptions of an account."""
        return {name: owner for name, owner in self._owners.items() if owner}

    def is_managed(self, name: str) -> bool:
        return name in self._owners

    def owner(self, name: str) -> str | None:
        """The account a subscription belongs to ("" the operator's); None for one of the
        configuration file (or none)."""
        return self._owners.get(name)

    def file_subscriptions(self) -> list[Subscription]:
        return [s for s in self._bridge.settings.subscriptions if s.name not in self._owners]

    def merged(self, settings: Settings) -> Settings:
        """``settings`` (read from the file) with the API's subscriptions after its own."""
        _refuse_clashes(settings.subscriptions, self._owners)
        ours = [s for s in self._bridge.settings.subscriptions if s.name in self._owners]
        return settings.model_copy(update={"subscriptions": [*settings.subscriptions, *ours]})

    # -- life -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load and apply the set once, before the dispatcher builds its lanes."""
        rows = await self._bridge.store.stored_subscriptions()
        await self._reseal(rows)
        # A name of the file held by the API stops the start, naming both.
        _refuse_clashes(self.file_subscriptions(), {row.name: row.account for row in rows})
        await self._apply(await self._bridge.store.managed_version(), rows, strict=True)

    async def run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL)
            if self._stop.is_set():
                return
            try:
                await self._poll()
            except (StoreError, ConfigError) as exc:
                log.warning("cannot read the API's subscriptions", error=str(exc))

    def stop(self) -> None:
        self._stop.set()

    async def refresh(self) -> None:
        """Apply what the store holds now (after a change made here)."""
        version = await self._bridge.store.managed_version()
        await self._apply(version, await self._bridge.store.stored_subscriptions())

    async def catch_up(self) -> None:
        """Apply what changed in the store since the last poll (before a change made here
        reads the current rows: another instance may have changed them a moment ago)."""
        await self._poll()

    async def _poll(self) -> None:
        version = await self._bridge.store.managed_version()
        expired = self._next_expiry is not None and time.time() >= self._next_expiry
        if version != self._version or expired:
            await self._apply(version, await self._bridge.store.stored_subscriptions())

    # -- applying ---------------------------------------------------------------------------

    async def _reseal(self, rows: list[StoredSubscription]) -> None:
        """Rows sealed with an older key are sealed again with the current one."""
        stale = [row for row in rows if row.sealed is not None and self.sealer.stale(row.sealed)]
        resealed = [
            (row.name, self.sealer.reseal(row.sealed, name=row.name))
            for row in stale
            if row.sealed is not None
        ]
        if resealed:
            await self._bridge.store.reseal_subscriptions(resealed)
            log.info("secrets sealed again with the current key", subscriptions=len(resealed))

    def _subscription(
        self, row: StoredSubscription, now: float, *, strict: bool
    ) -> tuple[Subscription, specs.Secrets] | None:
        try:
            secrets: specs.Secrets = (
                {} if row.sealed is None else self.sealer.open(row.sealed, name=row.name)
            )
        except ConfigError as exc:
            if strict:
                raise
            # Sealed by an instance with another key: it runs there, not here.
            log.error("cannot open a stored subscription's secrets", error=str(exc))
            return None
        try:
            sub = Subscription.model_validate(specs.join(row.spec, secrets, now=now))
        except ValidationError as exc:
            # Stored by another version of the bridge: kept in the store, not run here.
            log.error("a stored subscription is not valid here", subscription=row.name, error=exc)
            return None
        return sub, secrets

    async def _apply(
        self, version: int, rows: list[StoredSubscription], *, strict: bool = False
    ) -> None:
        async with self._lock:
            now = time.time()
            built: list[tuple[StoredSubscription, Subscription, specs.Secrets]] = []
            for row in rows:
                found = self._subscription(row, now, strict=strict)
                if found is not None:
                    built.append((row, *found))
            file_subs = self.file_subscriptions()
            taken = {s.name for s in file_subs}
            running = [(row, sub, sec) for row, sub, sec in built if row.name not in taken]
            owners = {row.name: row.account for row, _, _ in running}
            removed = sorted(set(self._owners) - set(owners) - taken)
            new = self._bridge.settings.model_copy(
                update={"subscriptions": [*file_subs, *(sub for _, sub, _ in running)]}
            )
            await switch_subscriptions(self._bridge, new, {k: v for k, v in owners.items() if v})
            self._owners = owners
            self.rows = {row.name: row for row, _, _ in running}
            self.secrets = {row.name: sec for row, _, sec in running}
            self._version = version
            self._next_expiry = _next_expiry(self.secrets.values(), now)
            self.applied += 1
        if removed:
            # What this instance stored for them before it knew they were gone.
            ended = await self._bridge.store.end_deliveries(removed, now=time.time())
            log.info("API subscriptions removed", subscriptions=removed, deliveries_ended=ended)


def _refuse_clashes(file_subs: list[Subscription], held: dict[str, str]) -> None:
    """A name the file gives that a subscription made through the API holds: both named."""
    clashes = [
        f"subscriptions[{index}].name: '{sub.name}' is held by a subscription made through "
        f"the API ({_whose(held[sub.name])}); rename the one in the file, or delete the other"
        for index, sub in enumerate(file_subs)
        if sub.name in held
    ]
    if clashes:
        raise ConfigError(clashes[0], clashes)


def _whose(account: str) -> str:
    return f"of account {account}" if account else "the operator's"


def _next_expiry(all_secrets: Any, now: float) -> float | None:
    """When the next rotated secret stops signing (the set is applied again then)."""
    ends = [
        float(entry["expires_at"])
        for secrets in all_secrets
        for entry in secrets.get("secret", [])
        if entry.get("expires_at") is not None and entry["expires_at"] > now
    ]
    return min(ends) if ends else None
