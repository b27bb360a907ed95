"""Accounts, tokens, managed subscriptions and the audit trail in the SQLite store
(see :mod:`bridge.store.accounts`).

Each function runs inside one transaction the store opened (``BEGIN IMMEDIATE``
for writes: the check of a name or a limit and the insert that follows it see
no other writer in between) and never commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from bridge.store import account_statements as sql
from bridge.store import accounts as shared

__all__ = list(shared.ACCOUNT_OPERATIONS)  # a backend has each of these operations, no more

_END_DELIVERIES = f"""UPDATE deliveries SET status = 'dead', dead_reason = '{shared.DELETED}',
    next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
    lease_token = lease_token + 1, updated_at = ?2
    WHERE status = 'pending' AND subscription IN (SELECT value FROM json_each(?1))"""  # noqa: S608


def _audit(conn: sqlite3.Connection, *notes: shared.AuditNote) -> None:
    conn.executemany(sql.INSERT_AUDIT, [shared.audit_values(note) for note in notes])


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def managed_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute(sql.MANAGED_VERSION).fetchone()[0])


def stored_subscriptions(conn: sqlite3.Connection) -> list[shared.StoredSubscription]:
    return [shared.stored_from_row(row) for row in conn.execute(sql.STORED)]


def create_subscription(
    conn: sqlite3.Connection,
    row: shared.StoredSubscription,
    reserved: list[str],
    limit: int | None,
    audit: shared.AuditNote,
) -> shared.Created:
    if row.name in reserved or conn.execute(sql.NAME_HELD, (row.name,)).fetchone() is not None:
        return shared.Created.TAKEN
    if row.account:
        if conn.execute(sql.ACCOUNT_EXISTS, (row.account,)).fetchone() is None:
            return shared.Created.NO_ACCOUNT
        held = conn.execute(sql.COUNT_OF_ACCOUNT, (row.account,)).fetchone()[0]
        if limit is not None and held >= limit:
            return shared.Created.LIMIT
    values = (row.name, row.account, row.revision, _json(row.spec), row.sealed)
    conn.execute(sql.INSERT_STORED, (*values, row.created_at, row.updated_at))
    conn.execute(sql.BUMP_VERSION)
    _audit(conn, audit)
    return shared.Created.CREATED


def update_subscription(
    conn: sqlite3.Connection, update: shared.SubscriptionUpdate
) -> tuple[shared.Updated, int]:
    name, spec = update.name, _json(update.spec)
    values = (name, update.revision, spec, update.sealed, update.now)
    changed = conn.execute(sql.UPDATE_STORED, values).rowcount
    current = conn.execute(sql.REVISION_OF, (name,)).fetchone()
    if current is None:
        return shared.Updated.GONE, 0
    if not changed:
        return shared.Updated.STALE, int(current[0])
    conn.execute(sql.BUMP_VERSION)
    _audit(conn, update.audit)
    return shared.Updated.UPDATED, int(current[0])


def delete_subscription(
    conn: sqlite3.Connection, name: str, now: float, audit: shared.AuditNote
) -> int | None:
    found = conn.execute(sql.DELETE_STORED, (name,)).fetchone()
    if found is None:
        return None
    conn.execute(sql.RETIRE, (name, found[0], now))
    conn.execute(sql.BUMP_VERSION)
    _audit(conn, audit)
    return end_deliveries(conn, [name], now)


def end_deliveries(conn: sqlite3.Connection, names: list[str], now: float) -> int:
    return conn.execute(_END_DELIVERIES, (_json(names), now)).rowcount


def reseal_subscriptions(conn: sqlite3.Connection, sealed: list[tuple[str, bytes]]) -> None:
    conn.executemany(sql.RESEAL, sealed)


def create_account(
    conn: sqlite3.Connection, account: str, now: float, audit: shared.AuditNote
) -> bool:
    if not conn.execute(sql.INSERT_ACCOUNT, (account, now)).rowcount:
        return False
    _audit(conn, audit)
    return True


def delete_account(
    conn: sqlite3.Connection, account: str, now: float, audit: shared.AuditNote
) -> list[str] | None:
    if conn.execute(sql.ACCOUNT_EXISTS, (account,)).fetchone() is None:
        return None
    names = [row[0] for row in conn.execute(sql.NAMES_OF_ACCOUNT, (account,))]
    for name in names:
        conn.execute(sql.DELETE_STORED, (name,)).fetchall()
        conn.execute(sql.RETIRE, (name, account, now))
    if names:
        conn.execute(sql.BUMP_VERSION)
        end_deliveries(conn, names, now)
    tokens = conn.execute(sql.DELETE_TOKENS_OF, (account,)).rowcount
    conn.execute(sql.DELETE_ACCOUNT, (account,))
    _audit(conn, replace(audit, changes={"subscriptions": names, "tokens": tokens}))
    return names


def list_accounts(conn: sqlite3.Connection) -> list[shared.Account]:
    return [shared.Account(*row) for row in conn.execute(sql.LIST_ACCOUNTS)]


def create_token(  # noqa: PLR0917 - called as operation(conn, *args)
    conn: sqlite3.Connection,
    account: str,
    token_id: str,
    digest: str,
    now: float,
    audit: shared.AuditNote,
) -> bool:
    if conn.execute(sql.ACCOUNT_EXISTS, (account,)).fetchone() is None:
        return False
    conn.execute(sql.INSERT_TOKEN, (token_id, account, digest, now))
    _audit(conn, audit)
    return True


def revoke_token(
    conn: sqlite3.Connection, account: str, token_id: str, audit: shared.AuditNote
) -> bool:
    if not conn.execute(sql.REVOKE_TOKEN, (account, token_id)).rowcount:
        return False
    _audit(conn, audit)
    return True


def list_tokens(conn: sqlite3.Connection, account: str) -> list[shared.AccountToken] | None:
    if conn.execute(sql.ACCOUNT_EXISTS, (account,)).fetchone() is None:
        return None
    return [shared.AccountToken(*row) for row in conn.execute(sql.LIST_TOKENS, (account,))]


def token_owner(conn: sqlite3.Connection, digest: str) -> shared.AccountToken | None:
    row = conn.execute(sql.TOKEN_OWNER, (digest,)).fetchone()
    return None if row is None else shared.AccountToken(*row)


def list_audit(
    conn: sqlite3.Connection, account: str | None, before: int | None, size: int
) -> list[shared.AuditEntry]:
    rows: Sequence[Any] = conn.execute(sql.LIST_AUDIT, (account, before, size)).fetchall()
    return [shared.audit_from_row(row) for row in rows]


def purge_history(conn: sqlite3.Connection, audit_before: float, retired_before: float) -> int:
    removed = conn.execute(sql.PURGE_AUDIT, (audit_before,)).rowcount
    return removed + conn.execute(sql.PURGE_RETIRED, (retired_before,)).rowcount
