"""The PostgreSQL schema and its migrations.

``MIGRATIONS`` is the ordered list of steps; step *n* (1-based) brings the
schema to version *n*. ``migrate()`` runs in ONE transaction that first takes
a transaction-scoped advisory lock named after the schema: when several
instances start together, one applies the missing steps and the others wait
for the lock, then find the schema current. A step is never edited once
released: changes are new steps.

Times are ``double precision`` epoch seconds, as in the SQLite store, so the
two backends hand the same floats back to callers.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.errors import StoreError
from bridge.store import statements

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "quote_ident"]

_V1 = (
    """CREATE TABLE events (
        arrival bigint GENERATED ALWAYS AS IDENTITY,
        id text COLLATE "C" PRIMARY KEY,
        type text NOT NULL,
        source text NOT NULL,
        device_id text,
        occurred_at double precision NOT NULL,
        received_at double precision NOT NULL,
        content_hash text,
        body bytea NOT NULL
    )""",
    # Partial: most events carry a device message id and no content hash.
    "CREATE INDEX events_content_hash ON events (content_hash) WHERE content_hash IS NOT NULL",
    "CREATE INDEX events_occurred_at ON events (occurred_at)",
    "CREATE INDEX events_received_at ON events (received_at)",
    # Ids are compared byte by byte (COLLATE "C"): delivery ids sort by creation
    # time only in that order, and list_deliveries pages on it.
    # seq is the creation order (SQLite's rowid): claims break ties on it, so
    # deliveries of one device due at the same time go out in arrival order.
    """CREATE TABLE deliveries (
        seq bigint GENERATED ALWAYS AS IDENTITY,
        id text COLLATE "C" PRIMARY KEY,
        event_id text COLLATE "C" NOT NULL REFERENCES events (id),
        subscription text NOT NULL,
        device_id text,
        status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        lease_owner text,
        lease_until double precision,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        dead_reason text,
        last_status_code integer,
        last_error text
    )""",
    # Partial: the claim query only ever looks at pending rows, which stay few
    # while delivered ones pile up until retention purges them.
    """CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at, seq)
        WHERE status = 'pending'""",
    "CREATE INDEX deliveries_event ON deliveries (event_id)",
    "CREATE INDEX deliveries_lease_owner ON deliveries (lease_owner) WHERE status = 'pending'",
    # Serves retention (finished before a bound), expiry (pending) and counts().
    "CREATE INDEX deliveries_finished ON deliveries (status, updated_at)",
    """CREATE TABLE attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        started_at double precision NOT NULL,
        latency_ms double precision NOT NULL,
        status_code integer,
        error text,
        response_excerpt text
    )""",
    "CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt)",
    """CREATE TABLE rejected (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at double precision NOT NULL,
        topic text NOT NULL,
        payload bytea NOT NULL,
        reason text NOT NULL,
        detail text NOT NULL
    )""",
    """CREATE TABLE subscription_state (
        name text PRIMARY KEY,
        disabled boolean NOT NULL DEFAULT false,
        disabled_reason text,
        failing_since double precision,
        last_success double precision,
        last_failure double precision,
        extra text NOT NULL DEFAULT '{}'
    )""",
    # One row the write probe updates: proves a commit goes through.
    "CREATE TABLE probe (id integer PRIMARY KEY CHECK (id = 1), at double precision NOT NULL)",
    "INSERT INTO probe (id, at) VALUES (1, 0)",
)

# Presence rows (one per device, decided in the ingest transaction so every
# instance agrees) and the index that keeps ordered claims cheap: "is an earlier
# delivery of this device still pending?" is one index probe.
_V2 = (
    """CREATE TABLE presence (
        device_id text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('online', 'offline')),
        last_seen double precision NOT NULL,
        changed_at double precision NOT NULL,
        reason text
    )""",
    "CREATE INDEX presence_online ON presence (last_seen) WHERE state = 'online'",
    """CREATE INDEX deliveries_pending_device ON deliveries (subscription, device_id, seq)
        WHERE status = 'pending'""",
    # Which instance took the message in (the lease owner is cleared after the
    # attempt): tells operators, and the scale-out tests, how the work was shared.
    "ALTER TABLE deliveries ADD COLUMN ingested_by text",
)

# Leases that follow their holder: one heartbeat row per bridge instance (its
# time from the database's clock, now()) and a fencing token per claim.
_LEASES_FOLLOW_HOLDER = (
    """CREATE TABLE instances (
        owner text PRIMARY KEY,
        heartbeat_at double precision NOT NULL
    )""",
    "ALTER TABLE deliveries ADD COLUMN lease_token bigint NOT NULL DEFAULT 0",
)

# The redelivery window of DUP messages (per MQTT client id) and the index the
# oldest-pending-age gauge reads (one probe per subscription).
_DEDUPE_WINDOW_AND_PENDING_AGE = (
    """CREATE TABLE ingest_watermarks (
        client_id text PRIMARY KEY,
        oldest_unacked double precision NOT NULL
    )""",
    """CREATE INDEX deliveries_pending_age ON deliveries (subscription, created_at)
        WHERE status = 'pending'""",
)

# Age counts from receipt: NULL means "from created_at"; an operator's retry and
# the end of a pause set it. The index serves the expiry sweep.
_AGE_FROM_RECEIPT = (
    "ALTER TABLE deliveries ADD COLUMN age_from double precision",
    """CREATE INDEX deliveries_pending_age_from
        ON deliveries ((coalesce(age_from, created_at))) WHERE status = 'pending'""",
)

# What the bridge keeps beside an event and never sends as such (JSON, see
# bridge.core.trace.EventContext): its trace, and the MQTT 5 Response Topic and
# Correlation Data a pipe subscription answers to. NULL for none.
_EVENT_CONTEXT = ("ALTER TABLE events ADD COLUMN context text",)
# The device directory: one row per device, written by every ingest (presence
# tracked or not) with the device's latest event, until an operator forgets it;
# filled here from the events and presence rows already stored. Device ids sort
# byte by byte (COLLATE "C"), whatever the database's collation, so the ids
# sharing a prefix are one range. The events index serves a device's history;
# the presence one the directory by state.
_DEVICE_DIRECTORY = (
    """CREATE TABLE devices (
        device_id text COLLATE "C" PRIMARY KEY,
        first_seen double precision NOT NULL,
        last_event_id text,
        last_event_type text,
        last_event_at double precision,
        last_received_at double precision
    )""",
    """CREATE INDEX events_device ON events (device_id COLLATE "C", arrival)
        WHERE device_id IS NOT NULL""",
    'CREATE INDEX presence_state_device ON presence (state, device_id COLLATE "C")',
    """INSERT INTO devices (device_id, first_seen, last_event_id, last_event_type,
        last_event_at, last_received_at)
    SELECT e.device_id, f.first_seen, e.id, e.type, e.occurred_at, e.received_at
    FROM (SELECT device_id, min(received_at) AS first_seen, max(arrival) AS last
          FROM events WHERE device_id IS NOT NULL GROUP BY device_id) AS f
    JOIN events AS e ON e.arrival = f.last""",
    """INSERT INTO devices (device_id, first_seen)
    SELECT device_id, changed_at FROM presence
    ON CONFLICT (device_id) DO NOTHING""",
)

# The timeout a device announced (its heartbeat interval times the misses
# allowed), seconds; NULL: it announced none.
_PRESENCE_HEARTBEAT = ("ALTER TABLE presence ADD COLUMN heartbeat double precision",)

# Batch membership: the deliveries sent together in one POST (a subscription's
# ``batch:``), so a retried batch goes out again whole, under the same id.
_BATCH_MEMBERS = (
    """CREATE TABLE batch_members (
        delivery_id text COLLATE "C" PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
        batch_id text COLLATE "C" NOT NULL,
        position integer NOT NULL
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
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text COLLATE "C" NOT NULL UNIQUE,
        source text NOT NULL,
        topic text NOT NULL,
        payload bytea NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'published', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision,
        lease_owner text,
        lease_until double precision,
        lease_token bigint NOT NULL DEFAULT 0,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        age_from double precision,
        max_age double precision NOT NULL,
        published_at double precision,
        dead_reason text,
        last_error text
    )""",
    "CREATE INDEX outbox_pending_topic ON outbox (topic, seq) WHERE status = 'pending'",
    "CREATE INDEX outbox_pending_due ON outbox (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX outbox_finished ON outbox (status, updated_at)",
    """CREATE TABLE IF NOT EXISTS inbound_ids (
        source text NOT NULL,
        msg_id text NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (source, msg_id)
    )""",
)

# Pipe replies share the outbox (bridge.delivery.pipe): kind tells an inbound
# webhook's message from a receiver's answer; a reply keeps the device's MQTT 5
# correlation data (bytes, exact; NULL when it gave none) and the answer's
# content type, and names the delivery (and attempt) it answers.
_OUTBOX_REPLIES = (
    "ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'inbound'",
    "ALTER TABLE outbox ADD COLUMN correlation bytea",
    "ALTER TABLE outbox ADD COLUMN content_type text",
    "ALTER TABLE outbox ADD COLUMN delivery_id text",
)

# The packet log (bridge.store.packets) tells a broker redelivery from an identical
# new message; it replaces the content-hash window, and its index goes with it.
_PACKET_LOG = (
    """CREATE TABLE ingest_packets (
        client_id text NOT NULL,
        seq bigint NOT NULL,
        connection text NOT NULL,
        packets bytea NOT NULL,
        PRIMARY KEY (client_id, seq)
    )""",
    "DROP TABLE ingest_watermarks",
    "DROP INDEX events_content_hash",
    # A delivery's row keeps its last attempt, so a first success needs no attempt
    # row of its own (bridge.store.common.first_success).
    "ALTER TABLE deliveries ADD COLUMN last_started_at double precision",
    "ALTER TABLE deliveries ADD COLUMN last_latency_ms double precision",
    "ALTER TABLE deliveries ADD COLUMN last_excerpt text",
)

# Fewer B-tree pages per event: an index is kept only where a query needs it, and
# partial where it serves one kind of row. Finished deliveries are what retention
# looks for; the event's own time was never looked up by an index.
_LEAN_INDEXES = (
    "DROP INDEX events_occurred_at",
    "DROP INDEX deliveries_finished",
    """CREATE INDEX deliveries_finished ON deliveries (status, updated_at)
        WHERE status <> 'pending'""",
)

# Catch-up after an outage (bridge.store.base.Store.catch_up): a delivery keeps the
# retry schedule's step apart from its attempt count (NULL: as many as its
# attempts), whether its last failure was endpoint-wide, the end of a Retry-After
# pause, and whether it was made due early; a subscription keeps the time its
# failing streak ended while its catch-up is not finished. The two flags are 0 or
# 1 as in SQLite, so both stores run the same statements. Deliveries already
# waiting after a refused, reset or timed-out attempt or a 5xx are marked as such
# (a 503 is not: whether it asked for a pause was not kept).
_CATCH_UP = (
    "ALTER TABLE deliveries ADD COLUMN retry_step integer",
    "ALTER TABLE deliveries ADD COLUMN endpoint_failure smallint NOT NULL DEFAULT 0",
    "ALTER TABLE deliveries ADD COLUMN not_before double precision",
    "ALTER TABLE deliveries ADD COLUMN early smallint NOT NULL DEFAULT 0",
    "ALTER TABLE subscription_state ADD COLUMN catching_up double precision",
    statements.MARK_ENDPOINT_FAILURES,
    statements.CATCH_UP_INDEX,
)

# The broker's own counters the bridge watches (bridge.ingest.drops): the last value
# seen of each, per broker, so what changed while the bridge was away shows at its
# return.
_BROKER_COUNTERS = (
    """CREATE TABLE broker_counters (
        broker text NOT NULL,
        name text NOT NULL,
        value bigint NOT NULL,
        seen_at double precision NOT NULL,
        PRIMARY KEY (broker, name)
    )""",
)


# Accounts (bridge.store.accounts). The account an event, a delivery (its
# subscription's), an attempt and a rejection belong to, "" for none; devices and
# their presence are keyed by (account, device id). Then the accounts, their tokens
# (SHA-256 digests), the subscriptions made through the API (secrets sealed), the
# counter every instance polls for their changes, the names of deleted ones
# (reserved while their deliveries may be kept) and the audit trail.
_ACCOUNTS = (
    "ALTER TABLE events ADD COLUMN account text NOT NULL DEFAULT ''",
    "ALTER TABLE deliveries ADD COLUMN account text NOT NULL DEFAULT ''",
    "ALTER TABLE attempts ADD COLUMN account text NOT NULL DEFAULT ''",
    "ALTER TABLE rejected ADD COLUMN account text NOT NULL DEFAULT ''",
    # An account's deliveries, newest first (a partial index would not serve a bound
    # account: the planner cannot tell it is not "").
    "CREATE INDEX deliveries_account ON deliveries (account, id)",
    "DROP INDEX events_device",
    """CREATE INDEX events_device ON events (account, device_id COLLATE "C", arrival)
        WHERE device_id IS NOT NULL""",
    "ALTER TABLE devices ADD COLUMN account text NOT NULL DEFAULT ''",
    "ALTER TABLE devices DROP CONSTRAINT devices_pkey",
    "ALTER TABLE devices ADD PRIMARY KEY (account, device_id)",
    # The operator's directory: every account's devices in device id order.
    "CREATE INDEX devices_by_id ON devices (device_id, account)",
    "ALTER TABLE presence ADD COLUMN account text NOT NULL DEFAULT ''",
    "ALTER TABLE presence DROP CONSTRAINT presence_pkey",
    "ALTER TABLE presence ADD PRIMARY KEY (account, device_id)",
    "DROP INDEX presence_state_device",
    """CREATE INDEX presence_state_device
        ON presence (state, device_id COLLATE "C", account)""",
    """CREATE INDEX presence_account_state
        ON presence (account, state, device_id COLLATE "C")""",
    """CREATE TABLE accounts (
        id text PRIMARY KEY,
        created_at double precision NOT NULL
    )""",
    """CREATE TABLE account_tokens (
        id text PRIMARY KEY,
        account text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        digest text NOT NULL UNIQUE,
        created_at double precision NOT NULL
    )""",
    "CREATE INDEX account_tokens_account ON account_tokens (account)",
    """CREATE TABLE managed_subscriptions (
        name text PRIMARY KEY,
        account text NOT NULL DEFAULT '',
        revision bigint NOT NULL,
        spec text NOT NULL,
        sealed bytea,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL
    )""",
    "CREATE INDEX managed_subscriptions_account ON managed_subscriptions (account)",
    """CREATE TABLE managed_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    )""",
    "INSERT INTO managed_version (id, version) VALUES (1, 0)",
    """CREATE TABLE retired_subscriptions (
        name text PRIMARY KEY,
        account text NOT NULL,
        retired_at double precision NOT NULL
    )""",
    """CREATE TABLE audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at double precision NOT NULL,
        actor text NOT NULL,
        token_id text,
        account text NOT NULL DEFAULT '',
        action text NOT NULL,
        target text NOT NULL,
        changes text NOT NULL DEFAULT '{}'
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

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at double precision NOT NULL
)"""


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (schema names come from the store URL)."""
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: Any, schema: str) -> int:
    """Create ``schema`` if needed and apply the missing steps; returns the version reached.

    ``conn`` is an asyncpg connection whose ``search_path`` starts with ``schema``.
    Everything happens in one transaction under an advisory lock keyed on the
    schema name, so two instances opening one new database cannot both apply
    a step (nor both create the schema: ``IF NOT EXISTS`` alone races).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"hookbridge:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_VERSION_TABLE)
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the database is at schema version {current}, newer than this "
                f"HookBridge knows ({SCHEMA_VERSION}); upgrade HookBridge"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                version,
                time.time(),
            )
        return SCHEMA_VERSION
