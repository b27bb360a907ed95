"""Accounts, their tokens, the subscriptions made through the API, and the audit trail.

What the store keeps for the settings people manage at run time:

- ``accounts``: the customers of the platform, each with its own devices and
  subscriptions; ``account_tokens`` the bearer tokens of each, kept as the
  SHA-256 of the token (shown once, never stored);
- ``managed_subscriptions``: subscriptions made through the API, beside those
  of the configuration file. Each row holds its fields as JSON without any
  secret, and its secrets sealed (Fernet, see :mod:`bridge.store.sealing`);
  ``revision`` grows with each change (the API's ETag). ``managed_version``
  is one counter that grows with every change of any of them: each bridge
  instance polls it (one cheap read) and applies the changed set;
- ``audit``: who changed what and when; secrets masked before they get here.

Every write here is one transaction with its audit rows, so nothing is ever
half saved. Pure part: the rows and the protocol; the SQL is in
``bridge/store/{sqlite,postgres}/accounts.py``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from bridge.errors import StoreError
from bridge.store import pages

__all__ = [
    "ACCOUNT_OPERATIONS",
    "DELETED",
    "Account",
    "AccountToken",
    "AccountsStore",
    "AuditEntry",
    "AuditNote",
    "Created",
    "StoredSubscription",
    "SubscriptionUpdate",
    "Updated",
    "audit_from_row",
    "audit_values",
    "decode_audit_cursor",
    "stored_from_row",
]

DELETED = "deleted"
"""The dead reason of the pending deliveries of a deleted subscription."""


class Created(StrEnum):
    CREATED = "created"
    TAKEN = "taken"  # the name is held: by a subscription, or by deliveries that name it
    LIMIT = "limit"  # the account holds as many subscriptions as it may
    NO_ACCOUNT = "no_account"  # the account it would belong to does not exist


class Updated(StrEnum):
    UPDATED = "updated"
    STALE = "stale"  # changed since the revision the caller read
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    created_at: float
    subscriptions: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class AccountToken:
    id: str  # tok_…: names the token (in the audit trail, to revoke it); not the token
    account: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """A subscription made through the API, as stored."""

    name: str
    account: str  # "" for the operator's
    revision: int
    spec: dict[str, Any]  # its fields as the configuration writes them, without secrets
    sealed: bytes | None  # its secrets, sealed; None when it holds none
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    note: AuditNote


@dataclass(frozen=True, slots=True)
class SubscriptionUpdate:
    """New fields and secrets for a subscription still at ``revision``."""

    name: str
    revision: int
    spec: dict[str, Any]
    sealed: bytes | None
    now: float
    audit: AuditNote


@dataclass(frozen=True, slots=True)
class AuditNote:
    """One change to record: who (the operator, or an account's token), what, on what."""

    at: float
    actor: str  # "operator" or "account"
    token_id: str | None
    account: str  # whose object it is ("" the operator's)
    action: str  # subscription.created, account.deleted, token.revoked…
    target: str  # the subscription name, account id or token id
    changes: dict[str, Any] = field(default_factory=dict)  # secrets already masked


def stored_from_row(row: Sequence[Any]) -> StoredSubscription:
    """A row of (name, account, revision, spec, sealed, created_at, updated_at)."""
    return StoredSubscription(
        name=row[0],
        account=row[1],
        revision=int(row[2]),
        spec=orjson.loads(row[3]),
        sealed=None if row[4] is None else bytes(row[4]),
        created_at=float(row[5]),
        updated_at=float(row[6]),
    )


def audit_values(note: AuditNote) -> tuple[Any, ...]:
    """(at, actor, token_id, account, action, target, changes as JSON)."""
    changes = orjson.dumps(note.changes).decode()
    return (note.at, note.actor, note.token_id, note.account, note.action, note.target, changes)


def audit_from_row(row: Sequence[Any]) -> AuditEntry:
    """A row of (id, at, actor, token_id, account, action, target, changes)."""
    note = AuditNote(
        float(row[1]), row[2], row[3], row[4], row[5], row[6], orjson.loads(row[7] or "{}")
    )
    return AuditEntry(int(row[0]), note)


_AUDIT_CURSOR = "audit:"


def _encode_audit_cursor(entry: AuditEntry) -> str:
    text = f"{_AUDIT_CURSOR}{entry.id}".encode()
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_audit_cursor(cursor: str) -> int:
    """The audit row id a page continues below (pages go newest first)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if text.startswith(_AUDIT_CURSOR):
            return int(text[len(_AUDIT_CURSOR) :])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise StoreError("invalid audit list cursor")


ACCOUNT_OPERATIONS = frozenset(
    [
        "create_account",
        "create_subscription",
        "create_token",
        "delete_account",
        "delete_subscription",
        "end_deliveries",
        "list_accounts",
        "list_audit",
        "list_tokens",
        "managed_version",
        "purge_history",
        "reseal_subscriptions",
        "revoke_token",
        "stored_subscriptions",
        "token_owner",
        "update_subscription",
    ]
)
"""The operations of accounts and managed subscriptions: each in a backend's
``accounts`` module."""


class AccountsStore:
    """The store's methods for accounts, tokens, managed subscriptions and the audit
    trail, each one transaction; a base of :class:`bridge.store.base.Store`."""

    async def _write(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _read(self, action: str, *args: Any) -> Any:
        raise NotImplementedError

    # -- managed subscriptions ---------------------------------------------------------

    async def managed_version(self) -> int:
        """The counter every change of a managed subscription raises (a cheap read)."""
        version: int = await self._read("managed_version")
        return version

    async def stored_subscriptions(self) -> list[StoredSubscription]:
        """Every subscription made through the API, by name."""
        found: list[StoredSubscription] = await self._read("stored_subscriptions")
        return found

    async def create_subscription(
        self,
        subscription: StoredSubscription,
        *,
        reserved: Sequence[str],
        limit: int | None,
        audit: AuditNote,
    ) -> Created:
        """Store a new subscription, unless its name is taken (by ``reserved`` names, a
        stored subscription, or a deleted one: a deleted name stays reserved until
        :meth:`purge_history` frees it, once its deliveries are gone), its account holds
        ``limit`` subscriptions already, or its account does not exist. One transaction
        with its audit row."""
        found: Created = await self._write(
            "create_subscription", subscription, list(reserved), limit, audit
        )
        return found

    async def update_subscription(self, update: SubscriptionUpdate) -> tuple[Updated, int]:
        """Replace a subscription's fields and secrets if it is still at the revision the
        caller read; returns what happened and the revision it is at now."""
        found: tuple[Updated, int] = await self._write("update_subscription", update)
        return found

    async def delete_subscription(self, name: str, *, now: float, audit: AuditNote) -> int | None:
        """Delete a subscription; its pending deliveries end dead with reason ``deleted``.
        Returns how many ended, or None when there is no such subscription."""
        ended: int | None = await self._write("delete_subscription", name, now, audit)
        return ended

    async def end_deliveries(self, names: Sequence[str], *, now: float) -> int:
        """Pending deliveries of these (deleted) subscriptions end dead, reason ``deleted``:
        what an instance stored for them before it learnt of the delete."""
        if not names:
            return 0
        ended: int = await self._write("end_deliveries", list(names), now)
        return ended

    async def reseal_subscriptions(self, sealed: Sequence[tuple[str, bytes]]) -> None:
        """Replace the sealed secrets of these subscriptions (sealed again with a new key);
        what they hold, their revision and the version counter stay."""
        if sealed:
            await self._write("reseal_subscriptions", list(sealed))

    # -- accounts and tokens -------------------------------------------------------------

    async def create_account(self, account: str, *, now: float, audit: AuditNote) -> bool:
        """False when the account exists already."""
        created: bool = await self._write("create_account", account, now, audit)
        return created

    async def delete_account(
        self, account: str, *, now: float, audit: AuditNote
    ) -> list[str] | None:
        """Delete an account with its tokens and its subscriptions (their pending
        deliveries end dead, ``deleted``); returns the subscriptions deleted, or None
        when there is no such account. Its devices and events stay until retention."""
        deleted: list[str] | None = await self._write("delete_account", account, now, audit)
        return deleted

    async def list_accounts(self) -> list[Account]:
        found: list[Account] = await self._read("list_accounts")
        return found

    async def create_token(
        self, account: str, token_id: str, digest: str, *, now: float, audit: AuditNote
    ) -> bool:
        """Keep a new token of ``account`` by its SHA-256 ``digest``; False: no account."""
        created: bool = await self._write("create_token", account, token_id, digest, now, audit)
        return created

    async def revoke_token(self, account: str, token_id: str, *, audit: AuditNote) -> bool:
        """False when the account has no such token."""
        revoked: bool = await self._write("revoke_token", account, token_id, audit)
        return revoked

    async def list_tokens(self, account: str) -> list[AccountToken] | None:
        """The account's tokens (never the tokens themselves); None: no such account."""
        found: list[AccountToken] | None = await self._read("list_tokens", account)
        return found

    async def token_owner(self, digest: str) -> AccountToken | None:
        """The token whose SHA-256 is ``digest``, if it exists (and its account does)."""
        found: AccountToken | None = await self._read("token_owner", digest)
        return found

    # -- the audit trail -------------------------------------------------------------------

    async def list_audit(
        self, *, account: str | None, cursor: str | None, limit: int
    ) -> tuple[list[AuditEntry], str | None]:
        """Audit rows newest first (``account``: only the rows about that account's
        things), one page, and the next page's cursor or None."""
        if limit < 1:
            raise StoreError("an audit page needs a limit of at least 1")
        before = decode_audit_cursor(cursor) if cursor is not None else None
        rows: list[AuditEntry] = await self._read("list_audit", account, before, limit + 1)
        return pages.page_and_cursor(rows, limit, _encode_audit_cursor)

    async def purge_history(self, *, audit_before: float, retired_before: float) -> int:
        """Delete audit rows older than ``audit_before``, and free the names of
        subscriptions deleted before ``retired_before`` (by then retention has removed
        their deliveries); returns how many rows went."""
        removed: int = await self._write("purge_history", audit_before, retired_before)
        return removed
