"""What the admin API needs of a running bridge: a protocol, not the composition root.

:class:`bridge.app.Bridge` satisfies it; the admin modules import only this,
so the API and the root that builds it do not know each other (no cycle, not
even a type-only one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from bridge.config import Settings
    from bridge.core.normalise import Normaliser
    from bridge.core.route import Router
    from bridge.delivery.dispatch import Dispatcher
    from bridge.delivery.retention import Retention
    from bridge.delivery.send import Sender
    from bridge.inbound.outbox import OutboxPublisher
    from bridge.ingest.client import Ingest
    from bridge.ingest.commit import CommitStep
    from bridge.ingest.presence import PresenceTracker
    from bridge.observe.metrics import Metrics
    from bridge.store.base import Store

__all__ = ["BridgeParts", "ManagedSet"]


class ManagedSet(Protocol):
    """What a reload needs of the subscriptions made through the API
    (:class:`bridge.admin.accounts.managed.ManagedSubscriptions`)."""

    @property
    def lock(self) -> asyncio.Lock:
        """Held while the running subscriptions switch: one switch at a time."""
        ...

    @property
    def owners(self) -> Mapping[str, str]:
        """Subscription name -> the account it belongs to, for those that belong to one."""
        ...

    def merged(self, settings: Settings) -> Settings:
        """``settings`` (read from the file) with the API's subscriptions added; raises
        ConfigError when the file names one the API holds."""
        ...

    def owner(self, name: str) -> str | None:
        """The account a subscription made through the API belongs to ("" the
        operator's); None for one of the configuration file."""
        ...


class BridgeParts(Protocol):
    """The running parts the API reads, and the ones a reload replaces."""

    settings: Settings
    config_path: str | os.PathLike[str] | None
    owner: str
    metrics: Metrics
    store: Store
    normaliser: Normaliser
    router: Router
    presence: PresenceTracker | None
    sender: Sender
    dispatcher: Dispatcher
    ingest: Ingest
    committer: CommitStep
    retention: Retention
    outbox: OutboxPublisher

    @property
    def managed(self) -> ManagedSet: ...
