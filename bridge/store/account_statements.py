"""The statements of accounts, tokens, managed subscriptions and the audit trail that both
stores run as they are, but for their placeholders (see :mod:`bridge.store.statements`).

f-strings here only join constant fragments; values are always bound.
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_EXISTS",
    "BUMP_VERSION",
    "COUNT_OF_ACCOUNT",
    "DELETE_ACCOUNT",
    "DELETE_STORED",
    "DELETE_TOKENS_OF",
    "INSERT_ACCOUNT",
    "INSERT_AUDIT",
    "INSERT_STORED",
    "INSERT_TOKEN",
    "LIST_ACCOUNTS",
    "LIST_AUDIT",
    "LIST_TOKENS",
    "MANAGED_VERSION",
    "NAMES_OF_ACCOUNT",
    "NAME_HELD",
    "PURGE_AUDIT",
    "PURGE_RETIRED",
    "RESEAL",
    "RETIRE",
    "REVISION_OF",
    "REVOKE_TOKEN",
    "STORED",
    "TOKEN_OWNER",
    "UPDATE_STORED",
]

_STORED_COLUMNS = "name, account, revision, spec, sealed, created_at, updated_at"

MANAGED_VERSION = "SELECT version FROM managed_version WHERE id = 1"
BUMP_VERSION = "UPDATE managed_version SET version = version + 1 WHERE id = 1"
STORED = f"SELECT {_STORED_COLUMNS} FROM managed_subscriptions ORDER BY name"  # noqa: S608
# A name is held by a subscription, or by one deleted whose deliveries may still be kept.
NAME_HELD = """SELECT 1 FROM managed_subscriptions WHERE name = ?1
    UNION ALL SELECT 1 FROM retired_subscriptions WHERE name = ?1"""
COUNT_OF_ACCOUNT = "SELECT count(*) FROM managed_subscriptions WHERE account = ?1"
ACCOUNT_EXISTS = "SELECT 1 FROM accounts WHERE id = ?1"
INSERT_STORED = f"""INSERT INTO managed_subscriptions ({_STORED_COLUMNS})
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"""  # noqa: S608
# Only while it is still at the revision the caller read: two editors never overwrite
# each other silently.
UPDATE_STORED = """UPDATE managed_subscriptions
    SET spec = ?3, sealed = ?4, updated_at = ?5, revision = revision + 1
    WHERE name = ?1 AND revision = ?2"""
REVISION_OF = "SELECT revision FROM managed_subscriptions WHERE name = ?1"
DELETE_STORED = "DELETE FROM managed_subscriptions WHERE name = ?1 RETURNING account"
RETIRE = """INSERT INTO retired_subscriptions (name, account, retired_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (name) DO UPDATE SET retired_at = excluded.retired_at"""
RESEAL = "UPDATE managed_subscriptions SET sealed = ?2 WHERE name = ?1"

INSERT_ACCOUNT = "INSERT INTO accounts (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING"
DELETE_ACCOUNT = "DELETE FROM accounts WHERE id = ?1"
NAMES_OF_ACCOUNT = "SELECT name FROM managed_subscriptions WHERE account = ?1 ORDER BY name"
DELETE_TOKENS_OF = "DELETE FROM account_tokens WHERE account = ?1"
LIST_ACCOUNTS = """SELECT a.id, a.created_at,
    (SELECT count(*) FROM managed_subscriptions AS m WHERE m.account = a.id),
    (SELECT count(*) FROM account_tokens AS t WHERE t.account = a.id)
    FROM accounts AS a ORDER BY a.id"""
INSERT_TOKEN = """INSERT INTO account_tokens (id, account, digest, created_at)
    VALUES (?1, ?2, ?3, ?4)"""  # noqa: S105 - a statement, not a secret
REVOKE_TOKEN = "DELETE FROM account_tokens WHERE account = ?1 AND id = ?2"  # noqa: S105
LIST_TOKENS = """SELECT id, account, created_at FROM account_tokens WHERE account = ?1
    ORDER BY created_at, id"""
TOKEN_OWNER = """SELECT t.id, t.account, t.created_at FROM account_tokens AS t
    JOIN accounts AS a ON a.id = t.account WHERE t.digest = ?1"""  # noqa: S105

INSERT_AUDIT = """INSERT INTO audit (at, actor, token_id, account, action, target, changes)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"""
LIST_AUDIT = """SELECT id, at, actor, token_id, account, action, target, changes FROM audit
    WHERE (CAST(?1 AS TEXT) IS NULL OR account = CAST(?1 AS TEXT))
      AND (CAST(?2 AS BIGINT) IS NULL OR id < CAST(?2 AS BIGINT))
    ORDER BY id DESC LIMIT ?3"""
PURGE_AUDIT = "DELETE FROM audit WHERE at < ?1"
PURGE_RETIRED = "DELETE FROM retired_subscriptions WHERE retired_at < ?1"
