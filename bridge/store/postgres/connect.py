"""What the PostgreSQL store needs before and around its SQL: the store URL and
the translation of asyncpg and socket errors into the bridge's exception tree, and
rows turned into the column arrays that ``unnest()`` inserts take.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bridge.errors import StoreError, StoreUnavailable

__all__ = ["FOREIGN_ERRORS", "columns", "parse_postgres_url", "translate"]

# SQLSTATE classes and codes that mean "cannot write now", not "this request is wrong":
# 08 connection exceptions, 40 transaction rollback (40001 serialization failure,
# 40P01 deadlock: the same statements succeed when run again), 53 insufficient
# resources (53100 disk full, 53300 too many connections), 55P03 lock not available
# (lock_timeout), 57014 query cancelled (statement_timeout), 57P01-57P03 shutdown /
# starting up, 25006 read-only transaction. None of them says anything about the
# rows written, so a batch refused with one of them is kept and tried again.
_UNAVAILABLE_CLASSES = ("08", "40", "53")
_UNAVAILABLE_CODES = ("25006", "55P03", "57014", "57P01", "57P02", "57P03")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OUR_OPTIONS = ("schema", "pool_size")


def parse_postgres_url(url: str) -> tuple[str, str, int]:
    """Split a store URL into (the DSN for asyncpg, schema, pool size)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise StoreError("a PostgreSQL store URL looks like postgresql://user@host:5432/db")
    options = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in options if key in _OUR_OPTIONS}
    schema = ours.get("schema", "public")
    if not _SCHEMA_NAME.match(schema):
        raise StoreError("store.url: schema must be a plain SQL name (letters, digits, _)")
    pool_text = ours.get("pool_size", "10")
    if not pool_text.isdigit() or not 1 <= int(pool_text) <= 1000:
        raise StoreError("store.url: pool_size must be a whole number from 1 to 1000")
    rest = urlencode([(k, v) for k, v in options if k not in _OUR_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), schema, int(pool_text)


def translate(exc: BaseException, action: str) -> StoreError:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "sqlstate", None) or ""
    unavailable = (
        isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError))
        or code.startswith(_UNAVAILABLE_CLASSES)
        or code in _UNAVAILABLE_CODES
        # The pool or connection was closed under us (e.g. the server went away).
        or (isinstance(exc, asyncpg.InterfaceError) and "closed" in text.lower())
    )
    if unavailable:
        return StoreUnavailable(f"the store cannot take writes ({action}): {text}")
    return StoreError(f"the store failed ({action}): {text}")


FOREIGN_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def columns(rows: Sequence[object], fields: str) -> list[list[Any]]:
    """One array per field of ``fields`` (names apart by spaces, as namedtuple takes them):
    the parameters of an ``INSERT ... SELECT * FROM unnest($1::type[], ...)``, one statement
    for a whole batch of rows."""
    return [[getattr(row, name) for row in rows] for name in fields.split()]
