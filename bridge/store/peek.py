"""Looking into a store without taking part in it: what ``check-config`` reads.

The store is opened read-only with no owner (it takes no lease, writes no
heartbeat, migrates nothing); a SQLite file that does not exist yet is left
alone, as an empty store.
"""

from __future__ import annotations

from bridge.config import StoreSettings
from bridge.store.accounts import StoredSubscription
from bridge.store.base import Store

__all__ = ["stored_subscriptions"]


def _read_only(settings: StoreSettings) -> Store | None:
    if settings.url.startswith("sqlite://"):
        from bridge.store.sqlite.store import SQLiteStore, sqlite_path

        path = sqlite_path(settings.url)
        return SQLiteStore(path, read_only=True) if path.exists() else None
    from bridge.store.postgres.store import PostgresStore

    return PostgresStore(settings.url, read_only=True, connect_timeout=5.0, acquire_timeout=5.0)


async def stored_subscriptions(settings: StoreSettings) -> list[StoredSubscription]:
    """The subscriptions made through the API that the store holds; raises
    :class:`~bridge.errors.StoreError` when it cannot be read."""
    store = _read_only(settings)
    if store is None:
        return []
    await store.open()
    try:
        return await store.stored_subscriptions()
    finally:
        await store.close()
