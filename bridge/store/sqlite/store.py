"""The SQLite store: the embedded durable outbox.

One file in WAL mode, written by ONE thread: every write is handed to a
single-worker executor that owns the writer connection, so the asyncio loop
never blocks on disk and SQLite never sees two writers from this process. Each
public method is one transaction (``BEGIN IMMEDIATE`` for writes, so the write
lock is taken up front and another process sharing the file waits on
``busy_timeout`` instead of failing half-way). A whole ``ingest`` batch is one
commit built from ``executemany``: the hot path never pays one fsync per message.

Reads run on reader threads with connections of their own (see
:mod:`bridge.store.sqlite_engine`, which also translates sqlite3 errors).

URLs follow the common convention: ``sqlite:///hookbridge.db`` is relative to
the working directory, ``sqlite:////var/lib/hookbridge/hookbridge.db`` absolute.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import ClassVar, Literal, TypeVar

from bridge.config import StoreSettings
from bridge.errors import StoreError
from bridge.store import statements as shared
from bridge.store.base import Store
from bridge.store.sqlite import accounts, batches, catchup, directory, leases, ops, outbox
from bridge.store.sqlite import queries as sql
from bridge.store.sqlite.checkpoint import CheckpointMode
from bridge.store.sqlite.engine import SQLiteEngine
from bridge.store.sqlite.schema import SCHEMA_VERSION, migrate, schema_version

__all__ = ["SQLiteStore", "sqlite_path"]

T = TypeVar("T")


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///…`` URL names (three slashes relative, four absolute)."""
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise StoreError("a SQLite store URL looks like sqlite:///hookbridge.db")
    return Path(url[len("sqlite:///") :])


# Where the store's operations are written, one module per part (bridge.store.base).
_OPERATIONS = (ops, sql, directory, batches, outbox, catchup, accounts)


class SQLiteStore(Store):
    """The durable outbox in one SQLite file (see the module docstring).

    ``read_only=True`` opens the file with ``mode=ro``: reads work, every write
    raises :class:`StoreUnavailable`. It serves inspection of a live database
    and is how the tests produce a real read-only store (file permissions do
    not stop root).

    ``owner`` is the bridge instance the store is opened for; see ``Store.open``
    for what opening does with it. Tools beside a running bridge leave it empty.
    """

    _sources: ClassVar[tuple[ModuleType, ...]] = _OPERATIONS

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 5.0,
        read_only: bool = False,
        owner: str = "",
        checkpoints: CheckpointMode = "auto",
        log_alert: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.owner = owner
        self._engine = SQLiteEngine(
            self.path,
            busy_timeout=busy_timeout,
            read_only=read_only,
            synchronous=synchronous,
            checkpoints=checkpoints,
            log_alert=log_alert,
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, owner: str = "") -> SQLiteStore:
        store = cls(
            sqlite_path(settings.url),
            synchronous=settings.synchronous,
            owner=owner,
            checkpoints=settings.checkpoints,
            log_alert=settings.log_alert,
        )
        store.takeover_after = settings.takeover_after
        return store

    def __repr__(self) -> str:
        return f"SQLiteStore(path={str(self.path)!r}, read_only={self.read_only})"

    async def _run(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        action: str,
        write: bool = True,
        lazy: bool = False,
    ) -> T:
        """Run ``work`` as one transaction: writes on the writer thread, reads on a reader."""
        if write:
            return await self._engine.write(work, action=action, lazy=lazy)
        return await self._engine.read(work, action=action)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to the current version; drop this owner's old leases."""
        if self.read_only:
            version = schema_version(conn)
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"the database is at schema version {version}, not {SCHEMA_VERSION}"
                )
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the database refused WAL mode (got {mode})")
        migrate(conn)
        if self.owner:
            # Without this a restarted instance would wait for its own work. Autocommit
            # mode: each statement is its own transaction.
            conn.execute(shared.RELEASE_OWNER, (self.owner,))
            conn.execute(leases.HEARTBEAT, (self.owner,))

    def _leave(self, conn: sqlite3.Connection) -> None:
        """An instance closing: its leases go back at once and its heartbeat row goes."""
        conn.execute(shared.RELEASE_OWNER, (self.owner,))
        conn.execute(leases.FORGET_INSTANCE, (self.owner,))

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine.is_open:
            return
        await self._engine.open(self._prepare)

    async def close(self) -> None:
        leave = self._leave if self.owner and not self.read_only else None
        await self._engine.close(leave)

    async def log_bytes(self) -> int:
        """The ``-wal`` file's size: it grows while a reader keeps checkpoints from
        reaching its end (see bridge.store.sqlite.checkpoint)."""
        return await asyncio.to_thread(self._engine.log_bytes)
