"""The durable outbox: the :class:`Store` protocol and the backend chosen by URL.

``open_store(settings, owner=...)`` builds the backend a ``store.url`` names;
the caller then awaits ``store.open()`` (which connects and migrates) and,
at shutdown, ``store.close()``.
"""

from __future__ import annotations

from bridge.config import StoreSettings
from bridge.errors import ConfigError, StoreError
from bridge.store import rows
from bridge.store.base import Store
from bridge.store.rows import *  # noqa: F403 (the rows are this package's surface)

__all__ = ["Store", "open_store"]
__all__ += rows.__all__


def open_store(settings: StoreSettings, *, owner: str) -> Store:
    """The store backend for ``settings.url``, not yet opened.

    ``owner`` names this bridge instance (its stable client id, the name its
    leases are taken in). Opening the store drops leases left in that name by
    a killed run; a tool that opens the store beside a running bridge must
    pass ``owner=""`` so it takes nothing from it.
    """
    url = settings.url
    if url.startswith("sqlite://"):
        # Imported here: the backend module imports this package, and a
        # PostgreSQL-only deployment never needs it.
        from bridge.store.sqlite.store import SQLiteStore

        try:
            return SQLiteStore.from_settings(settings, owner=owner)
        except StoreError as exc:
            raise ConfigError(f"store.url: {exc}") from exc
    if url.startswith(("postgresql://", "postgres://")):
        from bridge.store.postgres.store import PostgresStore

        try:
            return PostgresStore.from_settings(settings, owner=owner)
        except StoreError as exc:
            raise ConfigError(f"store.url: {exc}") from exc
    # The URL's password, if any, stays out of the message.
    scheme = url.split(":", 1)[0]
    raise ConfigError(f"store.url: unknown store scheme '{scheme}'")
