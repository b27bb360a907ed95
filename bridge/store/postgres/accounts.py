"""Accounts, tokens, managed subscriptions and the audit trail in the PostgreSQL store
(see :mod:`bridge.store.accounts`).

Each coroutine runs inside one transaction the store opened and never commits.
Writes that check before they insert (a name free, an account under its limit)
first take one transaction-scoped advisory lock, so two instances creating at
once are put in a line instead of both passing the check.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from bridge.store import account_statements as sql
from bridge.store import accounts as shared
from bridge.store.postgres.queries import rowcount
from bridge.store.statements import numbered as pg

__all__ = list(shared.ACCOUNT_OPERATIONS)  # a backend has each of these operations, no more

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('hookbridge:managed'))"
_END_DELIVERIES = f"""UPDATE deliveries SET status = 'dead', dead_reason = '{shared.DELETED}',
    next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
    lease_token = lease_token + 1, updated_at = $2
    WHERE status = 'pending' AND subscription = ANY($1::text[])"""  # noqa: S608


async def _audit(conn: Any, note: shared.AuditNote) -> None:
    await conn.execute(pg(sql.INSERT_AUDIT), *shared.audit_values(note))


async def _exists(conn: Any, account: str) -> bool:
    return await conn.fetchval(pg(sql.ACCOUNT_EXISTS), account) is not None


async def managed_version(conn: Any) -> int:
    return int(await conn.fetchval(pg(sql.MANAGED_VERSION)))


async def stored_subscriptions(conn: Any) -> list[shared.StoredSubscription]:
    return [shared.stored_from_row(row) for row in await conn.fetch(pg(sql.STORED))]


async def create_subscription(
    conn: Any,
    row: shared.StoredSubscription,
    reserved: list[str],
    limit: int | None,
    audit: shared.AuditNote,
) -> shared.Created:
    await conn.execute(_LOCK)
    if row.name in reserved or await conn.fetchval(pg(sql.NAME_HELD), row.name) is not None:
        return shared.Created.TAKEN
    if row.account:
        if not await _exists(conn, row.account):
            return shared.Created.NO_ACCOUNT
        held = await conn.fetchval(pg(sql.COUNT_OF_ACCOUNT), row.account)
        if limit is not None and held >= limit:
            return shared.Created.LIMIT
    spec = orjson.dumps(row.spec).decode()
    await conn.execute(
        pg(sql.INSERT_STORED),
        row.name,
        row.account,
        row.revision,
        spec,
        row.sealed,
        row.created_at,
        row.updated_at,
    )
    await conn.execute(pg(sql.BUMP_VERSION))
    await _audit(conn, audit)
    return shared.Created.CREATED


async def update_subscription(
    conn: Any, update: shared.SubscriptionUpdate
) -> tuple[shared.Updated, int]:
    text = orjson.dumps(update.spec).decode()
    values = (update.name, update.revision, text, update.sealed, update.now)
    changed = rowcount(await conn.execute(pg(sql.UPDATE_STORED), *values))
    current = await conn.fetchval(pg(sql.REVISION_OF), update.name)
    if current is None:
        return shared.Updated.GONE, 0
    if not changed:
        return shared.Updated.STALE, int(current)
    await conn.execute(pg(sql.BUMP_VERSION))
    await _audit(conn, update.audit)
    return shared.Updated.UPDATED, int(current)


async def delete_subscription(
    conn: Any, name: str, now: float, audit: shared.AuditNote
) -> int | None:
    await conn.execute(_LOCK)
    account = await conn.fetchval(pg(sql.DELETE_STORED), name)
    if account is None:
        return None
    await conn.execute(pg(sql.RETIRE), name, account, now)
    await conn.execute(pg(sql.BUMP_VERSION))
    await _audit(conn, audit)
    return await end_deliveries(conn, [name], now)


async def end_deliveries(conn: Any, names: list[str], now: float) -> int:
    return rowcount(await conn.execute(_END_DELIVERIES, names, now))


async def reseal_subscriptions(conn: Any, sealed: list[tuple[str, bytes]]) -> None:
    await conn.executemany(pg(sql.RESEAL), sealed)


async def create_account(conn: Any, account: str, now: float, audit: shared.AuditNote) -> bool:
    if not rowcount(await conn.execute(pg(sql.INSERT_ACCOUNT), account, now)):
        return False
    await _audit(conn, audit)
    return True


async def delete_account(
    conn: Any, account: str, now: float, audit: shared.AuditNote
) -> list[str] | None:
    await conn.execute(_LOCK)
    if not await _exists(conn, account):
        return None
    names = [row[0] for row in await conn.fetch(pg(sql.NAMES_OF_ACCOUNT), account)]
    for name in names:
        await conn.fetchval(pg(sql.DELETE_STORED), name)
        await conn.execute(pg(sql.RETIRE), name, account, now)
    if names:
        await conn.execute(pg(sql.BUMP_VERSION))
        await end_deliveries(conn, names, now)
    tokens = rowcount(await conn.execute(pg(sql.DELETE_TOKENS_OF), account))
    await conn.execute(pg(sql.DELETE_ACCOUNT), account)
    await _audit(conn, replace(audit, changes={"subscriptions": names, "tokens": tokens}))
    return names


async def list_accounts(conn: Any) -> list[shared.Account]:
    return [shared.Account(*row) for row in await conn.fetch(pg(sql.LIST_ACCOUNTS))]


async def create_token(  # noqa: PLR0917 - called as operation(conn, *args)
    conn: Any, account: str, token_id: str, digest: str, now: float, audit: shared.AuditNote
) -> bool:
    if not await _exists(conn, account):
        return False
    await conn.execute(pg(sql.INSERT_TOKEN), token_id, account, digest, now)
    await _audit(conn, audit)
    return True


async def revoke_token(conn: Any, account: str, token_id: str, audit: shared.AuditNote) -> bool:
    if not rowcount(await conn.execute(pg(sql.REVOKE_TOKEN), account, token_id)):
        return False
    await _audit(conn, audit)
    return True


async def list_tokens(conn: Any, account: str) -> list[shared.AccountToken] | None:
    if not await _exists(conn, account):
        return None
    rows = await conn.fetch(pg(sql.LIST_TOKENS), account)
    return [shared.AccountToken(*row) for row in rows]


async def token_owner(conn: Any, digest: str) -> shared.AccountToken | None:
    row = await conn.fetchrow(pg(sql.TOKEN_OWNER), digest)
    return None if row is None else shared.AccountToken(*row)


async def list_audit(
    conn: Any, account: str | None, before: int | None, size: int
) -> list[shared.AuditEntry]:
    rows = await conn.fetch(pg(sql.LIST_AUDIT), account, before, size)
    return [shared.audit_from_row(row) for row in rows]


async def purge_history(conn: Any, audit_before: float, retired_before: float) -> int:
    removed = rowcount(await conn.execute(pg(sql.PURGE_AUDIT), audit_before))
    return removed + rowcount(await conn.execute(pg(sql.PURGE_RETIRED), retired_before))
