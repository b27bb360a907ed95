"""The SQLite schema and its migrations.

``MIGRATIONS`` is the ordered list of steps; step *n* (1-based) brings the
database to version *n*. ``migrate()`` applies, in one transaction each, the
steps a database has not seen and records every version it reaches in
``schema_version``. A step is never edited once released: changes are new steps.
"""

from __future__ import annotations

import sqlite3
import time

from bridge.errors import StoreError
from bridge.store import statements

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

_V1 = (
    """CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY,
        applied_at REAL NOT NULL
    )""",
    # arrival names the rowid, so the arrival sequence costs no extra index;
    # id is the key every query uses (UNIQUE, and the target of foreign keys).
    """CREATE TABLE events (
        arrival INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        device_id TEXT,
        occurred_at REAL NOT NULL,
        received_at REAL NOT NULL,
        content_hash TEXT,
        body BLOB NOT NULL
    )""",
    # Partial: most events carry a device message id and no content hash.
    "CREATE INDEX events_content_hash ON events (content_hash) WHERE content_hash IS NOT NULL",
    "CREATE INDEX events_occurred_at ON events (occurred_at)",
    "CREATE INDEX events_received_at ON events (received_at)",
    # The implicit rowid is the creation order: claims break ties on it, so
    # deliveries of one device due at the same time go out in arrival order.
    """CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events (id),
        subscription TEXT NOT NULL,
        device_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        lease_owner TEXT,
        lease_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        dead_reason TEXT,
        last_status_code INTEGER,
        last_error TEXT
    )""",
    "CREATE INDEX deliveries_due ON deliveries (subscription, status, next_attempt_at)",
    "CREATE INDEX deliveries_event ON deliveries (event_id)",
    # Serves retention (finished before a bound), expiry (pending) and counts().
    "CREATE INDEX deliveries_finished ON deliveries (status, updated_at)",
    """CREATE TABLE attempts (
        delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        latency_ms REAL NOT NULL,
        status_code INTEGER,
        error TEXT,
        response_excerpt TEXT
    )""",
    "CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt)",
    """CREATE TABLE rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    """CREATE TABLE subscription_state (
        name TEXT PRIMARY KEY,
        disabled INTEGER NOT NULL DEFAULT 0,
        disabled_reason TEXT,
        failing_since REAL,
        last_success REAL,
        last_failure REAL,
        extra TEXT NOT NULL DEFAULT '{}'
    )""",
    # One row the write probe updates: proves a commit goes through.
    "CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)",
    "INSERT INTO probe (id, at) VALUES (1, 0)",
)

# Presence rows (one per device) and the index that keeps ordered claims cheap:
# "is an earlier delivery of this device still pending?" is one index probe.
_V2 = (
    """CREATE TABLE presence (
        device_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('online', 'offline')),
        last_seen REAL NOT NULL,
        changed_at REAL NOT NULL,
        reason TEXT
    )""",
    "CREATE INDEX presence_online ON presence (state, last_seen)",
    """CREATE INDEX deliveries_pending_device ON deliveries (subscription, device_id)
        WHERE status = 'pending'""",
)

# Leases that follow their holder: one heartbeat row per bridge instance (its
# time from the database's clock) and a fencing token per claim.
_LEASES_FOLLOW_HOLDER = (
    """CREATE TABLE instances (
        owner TEXT PRIMARY KEY,
        heartbeat_at REAL NOT NULL
    )""",
    "ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0",
)

# The redelivery window of DUP messages (per MQTT client id) and the index the
# oldest-pending-age gauge reads (one probe per subscription).
_DEDUPE_WINDOW_AND_PENDING_AGE = (
    """CREATE TABLE ingest_watermarks (
        client_id TEXT PRIMARY KEY,
        oldest_unacked REAL NOT NULL
    )""",
    """CREATE INDEX deliveries_pending_age ON deliveries (subscription, created_at)
        WHERE status = 'pending'""",
)

# Age counts from receipt: NULL means "from created_at"; an operator's retry and
# the end of a pause set it. The index serves the expiry sweep.
_AGE_FROM_RECEIPT = (
    "ALTER TABLE deliveries ADD COLUMN age_from REAL",
    """CREATE INDEX deliveries_pending_age_from
        ON deliveries (coalesce(age_from, created_at)) WHERE status = 'pending'""",
)

# What the bridge keeps beside an event and never sends as such (JSON, see
# bridge.core.trace.EventContext): its trace, and the MQTT 5 Response Topic and
# Correlation Data a pipe subscription answers to. NULL for none.
_EVENT_CONTEXT = ("ALTER TABLE events ADD COLUMN context TEXT",)
# The device directory: one row per device, written by every ingest (presence
# tracked or not) with the device's latest event, until an operator forgets it;
# filled here from the events and presence rows already stored. The events
# index serves a device's history; the presence one the directory by state.
_DEVICE_DIRECTORY = (
    """CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_event_id TEXT,
        last_event_type TEXT,
        last_event_at REAL,
        last_received_at REAL
    )""",
    "CREATE INDEX events_device ON events (device_id) WHERE device_id IS NOT NULL",
    "CREATE INDEX presence_state_device ON presence (state, device_id)",
    """INSERT INTO devices (device_id, first_seen, last_event_id, last_event_type,
        last_event_at, last_received_at)
    SELECT e.device_id, f.first_seen, e.id, e.type, e.occurred_at, e.received_at
    FROM (SELECT device_id, min(received_at) AS first_seen, max(arrival) AS last
          FROM events WHERE device_id IS NOT NULL GROUP BY device_id) AS f
    JOIN events AS e ON e.arrival = f.last""",
    """INSERT INTO devices (device_id, first_seen)
    SELECT device_id, changed_at FROM presence
    WHERE device_id NOT IN (SELECT device_id FROM devices)""",
)

# The timeout a device announced (its heartbeat interval times the misses
# allowed), seconds; NULL: it announced none.
_PRESENCE_HEARTBEAT = ("ALTER TABLE presence ADD COLUMN heartbeat REAL",)

# Batch membership: the deliveries sent together in one POST (a subscription's
# ``batch:``), so a retried batch goes out again whole, under the same id.
_BATCH_MEMBERS = (
    """CREATE TABLE batch_members (
        delivery_id TEXT PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
        batch_id TEXT NOT NULL,
        position INTEGER NOT NULL
    )""",
    "CREATE INDEX batch_members_batch ON batch_members (batch_id, position)",
)

# The MQTT outbox (bridge.store.outbox): accepted inbound webhooks waiting for
# the broker's PUBACK, leased like deliveries. seq is the acceptance order;
# the partial index answers "is an earlier message of this topic pending?"
# (per-topic order) in one probe. inbound_ids was created on first use before;
# accepting now writes it in the same transaction as the outbox row.
_OUTBOX = (
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'published', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        lease_owner TEXT,
        lease_until REAL,
        lease_token INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        age_from REAL,
        max_age REAL NOT NULL,
        published_at REAL,
        dead_reason TEXT,
        last_error TEXT
    )""",
    "CREATE INDEX outbox_pending_topic ON outbox (topic, seq) WHERE status = 'pending'",
    "CREATE INDEX outbox_pending_due ON outbox (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX outbox_finished ON outbox (status, updated_at)",
    """CREATE TABLE IF NOT EXISTS inbound_ids (
        source TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (source, msg_id)
    )""",
)

# Pipe replies share the outbox (bridge.delivery.pipe): kind tells an inbound
# webhook's message from a receiver's answer; a reply keeps the device's MQTT 5
# correlation data (bytes, exact; NULL when it gave none) and the answer's
# content type, and names the delivery (and attempt) it answers.
_OUTBOX_REPLIES = (
    "ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'inbound'",
    "ALTER TABLE outbox ADD COLUMN correlation BLOB",
    "ALTER TABLE outbox ADD COLUMN content_type TEXT",
    "ALTER TABLE outbox ADD COLUMN delivery_id TEXT",
)

# The packet log (bridge.store.packets) tells a broker redelivery from an identical
# new message; it replaces the content-hash window, and its index goes with it.
_PACKET_LOG = (
    """CREATE TABLE ingest_packets (
        client_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        connection TEXT NOT NULL,
        packets BLOB NOT NULL,
        PRIMARY KEY (client_id, seq)
    ) WITHOUT ROWID""",
    "DROP TABLE ingest_watermarks",
    "DROP INDEX events_content_hash",
    # A delivery's row keeps its last attempt, so a first success needs no attempt
    # row of its own (bridge.store.common.first_success).
    "ALTER TABLE deliveries ADD COLUMN last_started_at REAL",
    "ALTER TABLE deliveries ADD COLUMN last_latency_ms REAL",
    "ALTER TABLE deliveries ADD COLUMN last_excerpt TEXT",
)

# Fewer B-tree pages per event: an index is kept only where a query needs it, and
# partial where it serves one kind of row. Claims and the queue depth look at
# pending deliveries only, retention at finished ones; the event's own time was
# never looked up by an index.
_LEAN_INDEXES = (
    "DROP INDEX events_occurred_at",
    "DROP INDEX deliveries_due",
    """CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
        WHERE status = 'pending'""",
    "DROP INDEX deliveries_finished",
    """CREATE INDEX deliveries_finished ON deliveries (status, updated_at)
        WHERE status <> 'pending'""",
)

# Catch-up after an outage (bridge.store.base.Store.catch_up): a delivery keeps the
# retry schedule's step apart from its attempt count (NULL: as many as its
# attempts), whether its last failure was endpoint-wide, the end of a Retry-After
# pause, and whether it was made due early; a subscription keeps the time its
# failing streak ended while its catch-up is not finished. Deliveries already
# waiting after a refused, reset or timed-out attempt or a 5xx are marked as such
# (a 503 is not: whether it asked for a pause was not kept).
_CATCH_UP = (
    "ALTER TABLE deliveries ADD COLUMN retry_step INTEGER",
    "ALTER TABLE deliveries ADD COLUMN endpoint_failure INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE deliveries ADD COLUMN not_before REAL",
    "ALTER TABLE deliveries ADD COLUMN early INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE subscription_state ADD COLUMN catching_up REAL",
    statements.MARK_ENDPOINT_FAILURES,
    statements.CATCH_UP_INDEX,
)

# The broker's own counters the bridge watches (bridge.ingest.drops): the last value
# seen of each, per broker, so what changed while the bridge was away shows at its
# return.
_BROKER_COUNTERS = (
    """CREATE TABLE broker_counters (
        broker TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        seen_at REAL NOT NULL,
        PRIMARY KEY (broker, name)
    )""",
)


# Accounts (bridge.store.accounts). The account an event, a delivery (its
# subscription's), an attempt and a rejection belong to, "" for none; devices and
# their presence are keyed by (account, device id), so their tables are rebuilt
# with that key (SQLite cannot change a primary key in place). Then the accounts,
# their tokens (SHA-256 digests), the subscriptions made through the API (secrets
# sealed), the counter every instance polls for their changes, the names of deleted
# ones (reserved while their deliveries may be kept) and the audit trail.
_ACCOUNTS = (
    "ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE deliveries ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE attempts ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE rejected ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    # An account's deliveries, newest first (a partial index would not serve a bound
    # account: the planner cannot tell it is not "").
    "CREATE INDEX deliveries_account ON deliveries (account, id)",
    "DROP INDEX events_device",
    "CREATE INDEX events_device ON events (account, device_id) WHERE device_id IS NOT NULL",
    """CREATE TABLE devices_keyed (
        account TEXT NOT NULL DEFAULT '',
        device_id TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_event_id TEXT,
        last_event_type TEXT,
        last_event_at REAL,
        last_received_at REAL,
        PRIMARY KEY (account, device_id)
    )""",
    """INSERT INTO devices_keyed (device_id, first_seen, last_event_id, last_event_type,
        last_event_at, last_received_at)
    SELECT device_id, first_seen, last_event_id, last_event_type, last_event_at,
        last_received_at FROM devices""",
    "DROP TABLE devices",
    "ALTER TABLE devices_keyed RENAME TO devices",
    # The operator's directory: every account's devices in device id order.
    "CREATE INDEX devices_by_id ON devices (device_id, account)",
    """CREATE TABLE presence_keyed (
        account TEXT NOT NULL DEFAULT '',
        device_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('online', 'offline')),
        last_seen REAL NOT NULL,
        changed_at REAL NOT NULL,
        reason TEXT,
        heartbeat REAL,
        PRIMARY KEY (account, device_id)
    )""",
    """INSERT INTO presence_keyed (device_id, state, last_seen, changed_at, reason, heartbeat)
    SELECT device_id, state, last_seen, changed_at, reason, heartbeat FROM presence""",
    "DROP TABLE presence",
    "ALTER TABLE presence_keyed RENAME TO presence",
    "CREATE INDEX presence_online ON presence (state, last_seen)",
    "CREATE INDEX presence_state_device ON presence (state, device_id, account)",
    "CREATE INDEX presence_account_state ON presence (account, state, device_id)",
    """CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE account_tokens (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        digest TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX account_tokens_account ON account_tokens (account)",
    """CREATE TABLE managed_subscriptions (
        name TEXT PRIMARY KEY,
        account TEXT NOT NULL DEFAULT '',
        revision INTEGER NOT NULL,
        spec TEXT NOT NULL,
        sealed BLOB,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX managed_subscriptions_account ON managed_subscriptions (account)",
    """CREATE TABLE managed_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    )""",
    "INSERT INTO managed_version (id, version) VALUES (1, 0)",
    """CREATE TABLE retired_subscriptions (
        name TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        retired_at REAL NOT NULL
    )""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        token_id TEXT,
        account TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        changes TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX audit_account ON audit (account, id)",
    "CREATE INDEX audit_at ON audit (at)",
)


MIGRATIONS: list[tuple[str, ...]] = [
    _V1,
    _V2,
    _LEASES_FOLLOW_HOLDER,
    _DEDUPE_WINDOW_AND_PENDING_AGE,
    _AGE_FROM_RECEIPT,
    _EVENT_CONTEXT,
    _DEVICE_DIRECTORY,
    _PRESENCE_HEARTBEAT,
    _BATCH_MEMBERS,
    _OUTBOX,
    _OUTBOX_REPLIES,
    _PACKET_LOG,
    _LEAN_INDEXES,
    _CATCH_UP,
    _BROKER_COUNTERS,
    _ACCOUNTS,
]
"""Step *n* (1-based) brings the schema to version *n*."""

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a database is at; 0 for a new, empty file."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _known_version(conn: sqlite3.Connection) -> int:
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database is at schema version {current}, newer than this "
            f"HookBridge knows ({SCHEMA_VERSION}); upgrade HookBridge"
        )
    return current


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing steps (each in its own transaction); returns the version reached.

    The connection must be in autocommit mode (``isolation_level=None``) so the
    explicit ``BEGIN IMMEDIATE`` holds the write lock while a step runs: two
    processes opening one new file at once cannot both apply a step.
    """
    for _ in range(SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _known_version(conn)
            if current == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return current
            for statement in MIGRATIONS[current]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (current + 1, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    raise StoreError("schema migration did not reach the current version")
