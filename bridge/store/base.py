"""The store: the durable outbox every backend implements.

A backend keeps four things: events, deliveries (one per event and matching
subscription), attempts (one per HTTP try) and rejected messages. It is the
single source of truth: the dispatcher holds deliveries only under a *lease*
taken in the store, so several instances can share one store.

Leases follow their holder. A bridge instance keeps one heartbeat row in the
store (``heartbeat()``, renewed every few seconds, stamped with the database's
own clock); its leases hold for as long as that row is fresh, however long an
attempt takes, and are taken over by the others once the row is older than
``takeover_after`` (30 s by default). A holder with no heartbeat row (a tool,
a test) holds until the lease's ``lease_until``; so does an instance for its
own leases it has lost track of. Every claim stamps a *fencing token* on the
delivery: a result is applied only while the token it was sent under is still
the delivery's, so the late result of a lost lease never overwrites another
outcome.

:class:`Store` is written once for every backend: each public method is one
transaction, run by the backend's ``_run`` on one of its connections, doing
what the backend's *operations* module (``bridge.store.sqlite.ops``,
``bridge.store.postgres.ops``) says under the method's own name. A backend
class adds only how it connects, migrates and leaves.

Times are UNIX epoch seconds (float) throughout; callers pass ``now`` so the
logic stays testable with a fake clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

from bridge.core.events import Event
from bridge.errors import StoreError
from bridge.store import common
from bridge.store.accounts import ACCOUNT_OPERATIONS, AccountsStore
from bridge.store.catchup import CATCH_UP_OPERATIONS, CatchUpStore
from bridge.store.directory import DIRECTORY_OPERATIONS, DirectoryStore
from bridge.store.leases import TAKEOVER_AFTER
from bridge.store.outbox import OUTBOX_OPERATIONS, OutboxStore
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    Claim,
    Delivery,
    DeliveryStatus,
    IngestBatch,
    IngestResult,
    PresencePolicy,
    Rejection,
    SubscriptionState,
)

__all__ = ["OPERATIONS", "PURGE_MAX_CHUNKS", "Store"]

PURGE_MAX_CHUNKS = 10_000
"""How many bounded chunks one ``purge`` call removes at most."""

OPERATIONS = (
    frozenset(
        [
            "assign_batch",
            "attempts",
            "batch_members",
            "batches_of",
            "claim_due",
            "claim_presence_timeouts",
            "counts",
            "create_deliveries",
            "expire_older_than",
            "get_delivery",
            "get_event",
            "heartbeat",
            "ingest",
            "list_deliveries",
            "list_rejected",
            "next_due_at",
            "note_broker_counter",
            "oldest_pending",
            "probe",
            "purge_chunk",
            "queue_depth",
            "record_attempts",
            "release",
            "requeue",
            "resume_age",
            "save_subscription_state",
            "subscription_states",
        ]
    )
    | OUTBOX_OPERATIONS
    | CATCH_UP_OPERATIONS
    | DIRECTORY_OPERATIONS
    | ACCOUNT_OPERATIONS
)
"""What every backend does, each ``name(conn, …)`` in one of its ``_sources`` modules."""


class Store(OutboxStore, CatchUpStore, DirectoryStore, AccountsStore, ABC):
    """The durable outbox. Every method is one transaction (the MQTT outbox's are
    :class:`bridge.store.outbox.OutboxStore`'s, catching up and sending now
    :class:`bridge.store.catchup.CatchUpStore`'s, the device directory's
    :class:`bridge.store.directory.DirectoryStore`'s, and the accounts' and their
    subscriptions' :class:`bridge.store.accounts.AccountsStore`'s)."""

    owner: str
    takeover_after: float = TAKEOVER_AFTER  # a test may shorten it on one store
    _sources: ClassVar[tuple[ModuleType, ...]] = ()
    """Where a backend's operations are, looked up in this order."""
    _operations: ClassVar[dict[str, Callable[..., Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A backend's operations are found once, when its class is defined: a missing
        one fails at import, not on the first call that needs it."""
        super().__init_subclass__(**kwargs)
        found: dict[str, Callable[..., Any]] = {}
        for module in reversed(cls._sources):
            found.update((name, getattr(module, name)) for name in OPERATIONS & set(dir(module)))
        missing = OPERATIONS - set(found)
        if missing and not getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"{cls.__name__} lacks the operations {', '.join(sorted(missing))}")
        cls._operations = found

    # -- what a backend provides ------------------------------------------------------

    @abstractmethod
    async def _run(
        self, work: Callable[[Any], Any], *, action: str, write: bool = True, lazy: bool = False
    ) -> Any:
        """Run ``work(conn)`` as one transaction (a writer's, or a reader's snapshot).

        A ``lazy`` write may wait a few milliseconds to share a transaction that
        another write starts (SQLite's group commit); it is still its own unit."""

    @abstractmethod
    async def open(self) -> None:
        """Connect, migrate the schema to the current version.

        A store opened for a bridge instance (a non-empty ``owner``, its stable
        client id) also drops the leases still held in that name: the instance
        is starting, so nothing of its own is in flight, and those leases are
        left from a run that was killed. Tools that open the store beside a
        running bridge pass an empty owner.
        """

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; an instance's leases go back at once and its heartbeat row goes."""

    async def log_bytes(self) -> int | None:
        """The size of the backend's own write-ahead log on this machine, or None when
        it keeps none the bridge should watch (PostgreSQL's is the server's business)."""
        return None

    async def _write(self, action: str, *args: Any, lazy: bool = False) -> Any:
        operation = self._operations[action]
        return await self._run(lambda conn: operation(conn, *args), action=action, lazy=lazy)

    async def _read(self, action: str, *args: Any) -> Any:
        operation = self._operations[action]
        return await self._run(lambda conn: operation(conn, *args), action=action, write=False)

    # -- the hot path -----------------------------------------------------------------

    async def ingest(
        self,
        accepted: Sequence[Accepted],
        rejected: Sequence[Rejection],
        *,
        now: float,
        owner: str,
        lease_until: float,
        presence: PresencePolicy | None = None,
        ordered: Collection[str] = (),
        packet_window: int = 0,
        owners: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """Store events, their deliveries and rejections in one commit.

        An event whose id is already stored is a duplicate: nothing new is
        created for it. With ``packet_window``, the batch's packets are added to
        ``owner``'s packet log, and a broker redelivery (DUP) of a message
        committed on an earlier connection is a duplicate too
        (:mod:`bridge.store.packets`). New deliveries are leased to ``owner`` until
        ``lease_until`` and returned, so the caller can send them at once.

        With ``presence``, each new event's observation goes through
        :func:`bridge.core.presence.decide` against the stored presence row of
        its device (rows read and written in this same transaction, in batch
        order): synthetic transitions are stored (with their deliveries) just
        before the event that caused them, and an event that repeats the known
        state is stored without deliveries (counted in ``collapsed``).

        ``ordered`` names the subscriptions that send a device's deliveries in
        order; of their new deliveries, those that head their device's queue
        are in ``heads`` (see :mod:`bridge.store.heads`). ``owners`` names the account of
        each subscription that belongs to one: its deliveries are recorded as that
        account's (the others as the operator's).
        """
        batch = IngestBatch(
            accepted,
            rejected,
            now,
            owner,
            lease_until,
            presence,
            frozenset(ordered),
            packet_window,
            dict(owners or {}),
        )
        result: IngestResult = await self._write("ingest", batch)
        return result

    async def claim_presence_timeouts(
        self,
        *,
        now: float,
        policy: PresencePolicy,
        owner: str,
        lease_until: float,
        limit: int,
        owners: Mapping[str, str] | None = None,
    ) -> IngestResult:
        """In one transaction: up to ``limit`` online devices silent for longer
        than their timeout (the heartbeat they announced, else
        ``policy.offline_after``; oldest first) become offline per
        :func:`bridge.core.presence.decide` with observation None, and the
        announced ``heartbeat_timeout`` events are stored with deliveries leased
        to ``owner``, as ``ingest`` does. Rows another instance is claiming are
        skipped (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so each timeout is
        emitted by one instance only."""
        batch = IngestBatch((), (), now, owner, lease_until, owners=dict(owners or {}))
        result: IngestResult = await self._write("claim_presence_timeouts", batch, policy, limit)
        return result

    async def claim_due(
        self,
        subscription: str,
        *,
        now: float,
        owner: str,
        lease_until: float,
        limit: int,
        ordered: bool = False,
        per_device: int = 1,
    ) -> list[Delivery]:
        """Lease up to ``limit`` pending deliveries of one subscription that are due
        (``next_attempt_at <= now``) and not leased by a live lease, oldest first.

        A lease is live while its holder's heartbeat row is fresh; a holder with
        no row holds until ``lease_until``, and so does ``owner`` itself for its
        own leases (it claims back what it lost track of; the caller skips what
        it still holds). Claiming from another holder, or an unleased delivery,
        gives the delivery a new fencing token.

        ``ordered`` (the subscription's ``ordered: true``) makes it FIFO per device
        by arrival (creation) order: a delivery with a device id is claimable only
        when no earlier-created delivery of the same subscription and device is
        still pending (leased, in flight or waiting for its retry). So at most one
        delivery per device is out at a time, and a device's next one waits until
        the previous is delivered or dead. Deliveries without a device id are not
        held back.

        ``per_device`` above 1 (ordered batching) takes up to that many of each
        device's oldest pending deliveries at once, in creation order, each only
        while every older pending one of its device is due and unleased (claimed
        in this same call)."""
        stale = self.takeover_after
        claim = Claim(subscription, now, owner, lease_until, limit, stale, ordered, per_device)
        claimed: list[Delivery] = await self._write("claim_due", claim)
        return claimed

    async def assign_batch(self, batch_id: str, delivery_ids: Sequence[str]) -> None:
        """Note that these deliveries go together (in this order) as ``batch_id``; a
        delivery already in a batch moves to this one. Gone deliveries are skipped."""
        await self._write("assign_batch", batch_id, list(delivery_ids))

    async def batches_of(self, delivery_ids: Sequence[str]) -> dict[str, str]:
        """The batch id of each of these deliveries that is in a batch.
        ``requeue`` (an operator's retry) takes a delivery out of its batch."""
        found: dict[str, str] = await self._read("batches_of", list(delivery_ids))
        return found

    async def batch_members(self, batch_id: str) -> list[str]:
        """The deliveries stored as ``batch_id``, in their order (none: an empty list)."""
        members: list[str] = await self._read("batch_members", batch_id)
        return members

    async def next_due_at(self, subscription: str, *, ordered: bool = False) -> float | None:
        """The earliest ``next_attempt_at`` of the subscription's pending deliveries
        that nobody holds a lease on. Leased ones are being sent; one whose lease
        has run out (its owner died) is found by the next ``claim_due``, not here.
        With ``ordered``, only deliveries ``claim_due(ordered=True)`` could take
        count (a device's head of line), so a blocked device does not make the
        dispatcher poll."""
        due: float | None = await self._read("next_due_at", subscription, ordered)
        return due

    async def record_attempts(
        self,
        results: Sequence[tuple[AttemptRecord, AttemptOutcome]],
        *,
        now: float,
        lazy: bool = False,
    ) -> None:
        """Record attempts and apply their outcomes; releases the leases.

        An outcome whose record carries a ``lease_token`` is applied only while
        the delivery still has that token (nobody claimed it since); the
        attempt itself is kept in the history either way. A record's ``reply``
        (pipe mode) goes into the MQTT outbox in the same transaction, under the
        same token rule; its id makes recording the same attempt twice store it once.
        ``lazy``: the results may wait (at most 10 ms) to share another write's commit."""
        await self._write("record_attempts", results, now, lazy=lazy)

    async def heartbeat(self) -> None:
        """Renew this instance's heartbeat row (the store's ``owner``), stamped with
        the database's clock; its leases hold while the row is fresh."""
        if self.owner:
            await self._write("heartbeat", self.owner)

    async def oldest_pending(self, subscriptions: Sequence[str]) -> dict[str, float]:
        """For each named subscription with pending deliveries, the creation time of
        its oldest pending one (read on a read connection: it never waits for ingest)."""
        found: dict[str, float] = await self._read("oldest_pending", list(subscriptions))
        return found

    async def release(self, delivery_ids: Sequence[str]) -> None:
        """Drop our leases on deliveries we will not send now (shutdown, overflow)."""
        if delivery_ids:
            await self._write("release", list(delivery_ids))

    # -- reading ----------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        found: Delivery | None = await self._read("get_delivery", delivery_id)
        return found

    async def attempts(self, delivery_id: str) -> list[AttemptRecord]:
        found: list[AttemptRecord] = await self._read("attempts", delivery_id)
        return found

    async def get_event(self, event_id: str) -> Event | None:
        found: Event | None = await self._read("get_event", event_id)
        return found

    async def queue_depth(self, subscription: str) -> int:
        """Pending deliveries of a subscription."""
        depth: int = await self._read("queue_depth", subscription)
        return depth

    async def subscription_states(self) -> dict[str, SubscriptionState]:
        states: dict[str, SubscriptionState] = await self._read("subscription_states")
        return states

    async def list_rejected(self, *, limit: int) -> list[Rejection]:
        found: list[Rejection] = await self._read("list_rejected", limit)
        return found

    async def counts(self) -> dict[str, int]:
        """Deliveries by status, plus ``events`` and ``rejected``."""
        found: dict[str, int] = await self._read("counts")
        return found

    async def list_deliveries(
        self,
        *,
        subscription: str | None,
        status: DeliveryStatus | None,
        since: float | None,
        until: float | None,
        cursor: str | None,
        limit: int,
        account: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, optionally filtered (``since <= created_at < until``;
        ``account``: only the deliveries of that account's subscriptions).

        Returns one page and an opaque cursor for the next page, or None after
        the last page. Delivery ids sort by creation time, so the key alone pages.
        """
        common.check_page_limit(limit)
        filters = common.delivery_filters(
            subscription=subscription,
            status=status,
            since=since,
            until=until,
            cursor=cursor,
            account=account,
        )
        rows: list[Delivery] = await self._read("list_deliveries", filters, limit + 1)
        return common.page_and_cursor(rows, limit)

    # -- operator and housekeeping writes ---------------------------------------------

    async def save_subscription_state(self, state: SubscriptionState) -> None:
        await self._write("save_subscription_state", common.subscription_state_values(state))

    async def requeue(self, delivery_id: str, *, now: float) -> bool:
        """Make a delivery (dead or delivered) pending and due now; False if unknown."""
        requeued: bool = await self._write("requeue", delivery_id, now)
        return requeued

    async def create_deliveries(
        self,
        event: Event,
        subscriptions: Sequence[str],
        *,
        now: float,
        owners: Mapping[str, str] | None = None,
    ) -> list[Delivery]:
        """Store ``event`` if it is not stored yet and create one new pending delivery
        per subscription, due ``now`` and unleased (replay, test pings); ``owners`` as
        for ``ingest``."""
        accounts = common.delivery_owners(subscriptions, owners or {})
        created: list[Delivery] = await self._write(
            "create_deliveries", event, subscriptions, now, accounts
        )
        return created

    async def purge(self, *, delivered_before: float, dead_before: float) -> int:
        """Delete delivered deliveries finished before ``delivered_before`` and dead
        ones finished before ``dead_before``, with their attempts, then the events
        left with no delivery that were received before the later of the two bounds.
        Returns the number of rows removed (deliveries, attempts and events).

        One bounded chunk per transaction: ingest commits get the writer in between."""
        removed = 0
        for _ in range(PURGE_MAX_CHUNKS):
            done, chunk = await self._write("purge_chunk", delivered_before, dead_before)
            removed += chunk
            if done:
                break
        return removed

    async def expire_older_than(
        self, *, received_before: float, now: float, paused: Sequence[str] = ()
    ) -> dict[str, int]:
        """Pending deliveries whose age counts from before ``received_before`` become
        dead with reason ``too_old``; returns how many per subscription.

        Age counts from receipt (see :attr:`Delivery.age_start`), never from the
        device's clock. Left alone: deliveries under a live lease (their attempt
        decides), and those of subscriptions disabled in the store or named in
        ``paused``: a paused subscription's queue does not age.
        """
        expired: dict[str, int] = await self._write(
            "expire_older_than", received_before, now, list(paused)
        )
        return expired

    async def resume_age(self, subscription: str, *, paused_for: float) -> int:
        """A subscription's pause ended after ``paused_for`` seconds: its pending
        deliveries' age starts that much later; returns how many were moved."""
        moved: int = await self._write("resume_age", subscription, paused_for)
        return moved

    async def note_broker_counter(
        self, broker: str, name: str, value: int, *, now: float
    ) -> int | None:
        """Keep ``value`` as the last seen of the broker's counter ``name``; returns the
        one kept before (None the first time). One transaction: of two instances seeing
        the same new value, only the first sees the old one."""
        previous: int | None = await self._write("note_broker_counter", broker, name, value, now)
        return previous

    async def is_writable(self) -> bool:
        """A cheap write probe: False when the store refuses writes (read-only, full)."""
        try:
            await self._run(self._operations["probe"], action="write probe")
        except StoreError:
            return False
        return True
