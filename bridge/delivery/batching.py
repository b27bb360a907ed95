"""Batching: several deliveries of one subscription in one signed POST.

A subscription with ``batch:`` gets the same lane as any other (buffer,
in-flight limit, rate limit, circuit, Retry-After); what changes is what one
attempt carries. :class:`BatchSending` takes up to ``max_events``
deliveries from the lane's buffer (the body at most ``max_bytes``), stores
their membership under a new batch id, and sends them as one body
(:mod:`bridge.core.batching`). A partial batch waits at most ``max_wait`` for
more. Every member gets the attempt's result and the same next state, so a
failed batch falls due again whole; its members are recognised by their stored
batch id and sent together again under that id. An operator's retry takes a
delivery out of its batch (it goes in a new one); a replay is a new delivery.

A batch id is the POST's ``webhook-id``, which receivers deduplicate on, so it
is reused only for exactly the events it was first sent with: a retried batch
keeps its id only when the POST carries every stored member (all pending and
claimed by this instance). When a claim got only part of a batch (the lane's
room ran out, another instance claimed the rest, a member went dead as too
old, a reload lowered ``max_events``), the part goes under a new batch id and
its membership moves there; the rest does the same wherever it is sent.

Ordered subscriptions claim each device's first ``max_events`` deliveries at
once (``Store.claim_due`` with ``per_device``); a batch takes a device's run whole or in part,
and the part it cannot take goes back to the store, where it waits until the
batch is settled: a device's events never travel in two batches at once.
"""

from __future__ import annotations

import os

import structlog

from bridge.core.batching import BATCH_ID_PREFIX, batch_of, envelope, fitting
from bridge.core.settings.batch import BatchSettings
from bridge.delivery.attempts import Attempts
from bridge.delivery.book import NO_BATCH
from bridge.delivery.lane import Lane
from bridge.errors import StoreError
from bridge.observe.logs import get_logger
from bridge.store.base import Store
from bridge.store.ids import new_delivery_id
from bridge.store.rows import Delivery

__all__ = ["BatchSending", "new_batch_id"]

log = get_logger("hookbridge.dispatch")


def new_batch_id(now: float) -> str:
    """A fresh batch id: ``bat_`` + a time-ordered random id (as delivery ids)."""
    return BATCH_ID_PREFIX + new_delivery_id(now, os.urandom(10)).removeprefix("dlv_")


class BatchSending:
    """Several deliveries per attempt, for lanes of subscriptions with ``batch:``."""

    def __init__(self, attempts: Attempts, store: Store) -> None:
        self._attempts = attempts
        self._store = store

    async def start(self, lane: Lane) -> None:
        batch = lane.subscription.batch
        assert batch is not None
        attempts = self._attempts
        while attempts.may_start(lane):
            if not await self._know_batches(lane):
                break
            chosen = await self._choose(lane, batch)
            if chosen is None:
                break  # a partial batch waits for more (see Lane.gather_until)
            batch_id, members, envelopes = chosen
            was_open = await attempts.admit(lane)
            if was_open is None:
                break  # open: deliveries wait in the book and the store, none dropped
            waiting = {d.id for d in lane.book.waiting}
            if any(m.id not in waiting for m in members):
                # Given back while the rate limit held us: choose again.
                attempts.unused(lane, was_open)
                continue
            stored = lane.book.batch_of(members[0].id) == batch_id
            lane.book.start({m.id for m in members})
            attempt = self._attempt(lane, batch_id, members, envelopes, stored=stored)
            attempts.launch(lane, batch_id, attempt, probe=was_open)

    async def _know_batches(self, lane: Lane) -> bool:
        """Look up the stored batch of waiting deliveries not known yet; False: not now."""
        unknown = lane.book.unknown_batches()
        if not unknown:
            return True
        try:
            found = await self._store.batches_of(unknown)
        except StoreError as exc:
            log.warning("cannot read batch membership", subscription=lane.name, error=str(exc))
            lane.poll_at = self._attempts.clock() + 1.0
            return False
        lane.book.note_batches(found, unknown)
        return True

    async def _choose(
        self, lane: Lane, settings: BatchSettings
    ) -> tuple[str, list[Delivery], list[bytes]] | None:
        """The next batch of the waiting deliveries: its id, members and their envelopes;
        None: wait.

        The first waiting delivery decides: a member of a stored batch goes with
        the other waiting members of that batch, under its id (a retry); a new
        one with the other new ones, under a new id, once ``max_events`` are
        there or the first has waited ``max_wait``.
        """
        now = self._attempts.clock()
        book = lane.book
        ordered = lane.subscription.ordered
        group = book.batch_of(book.waiting[0].id) or NO_BATCH
        if group == NO_BATCH:
            fresh = sum(1 for d in book.waiting if book.batch_of(d.id) == NO_BATCH)
            if lane.gather_until is None:
                lane.gather_until = now + settings.max_wait
            if (
                fresh < settings.max_events
                and now < lane.gather_until
                and not self._attempts.stopping
            ):
                return None
            lane.gather_until = None
        batch_id = group or new_batch_id(now)
        members: list[Delivery] = []
        envelopes: list[bytes] = []
        sizes: list[int] = []
        blocked: set[str] = set()  # devices whose next delivery must wait (ordered)
        left_behind: list[Delivery] = []
        for delivery in book.waiting:
            device = delivery.event.device_id if ordered else None
            if device is not None and device in blocked:
                if any(m.event.device_id == device for m in members):
                    left_behind.append(delivery)
                continue
            fits = book.batch_of(delivery.id) == group
            if fits:
                body = envelope(delivery.event, lane.subscription.format)
                wanted = [*sizes, len(body)]
                kept = fitting(
                    wanted,
                    batch_id=batch_id,
                    max_events=settings.max_events,
                    max_bytes=settings.max_bytes,
                )
                fits = kept == len(wanted)
            if fits:
                members.append(delivery)
                envelopes.append(body)
                sizes.append(len(body))
            elif device is not None:
                blocked.add(device)
                if any(m.event.device_id == device for m in members):
                    left_behind.append(delivery)
            elif not ordered and book.batch_of(delivery.id) == group:
                break  # full
        await self._leave_behind(lane, left_behind)
        return batch_id, members, envelopes

    async def _leave_behind(self, lane: Lane, deliveries: list[Delivery]) -> None:
        """Give back a device's deliveries that must wait for its batch in flight.

        Back in the store they are claimable again only once that batch is settled.
        """
        if not deliveries:
            return
        ids = lane.book.give_back({d.id for d in deliveries})
        try:
            await self._store.release(ids)
        except StoreError as exc:  # their leases run out; they are claimed again then
            log.warning("cannot release deliveries", subscription=lane.name, error=str(exc))

    # -- one batch ------------------------------------------------------------------

    async def _attempt(
        self,
        lane: Lane,
        batch_id: str,
        members: list[Delivery],
        envelopes: list[bytes],
        *,
        stored: bool,
    ) -> None:
        attempts = self._attempts
        sub = lane.subscription
        started = attempts.clock()
        key = batch_id  # the lane's name for this attempt (see Attempts.launch)
        recorded: set[str] = set()
        try:
            structlog.contextvars.bind_contextvars(subscription=sub.name)
            sending: list[tuple[Delivery, bytes]] = []
            for member, body in zip(members, envelopes, strict=True):
                if attempts.too_old(member, started):
                    await attempts.record_too_old(lane, member, member.attempts + 1, started)
                    recorded.add(member.id)
                else:
                    sending.append((member, body))
            if not sending:
                return
            ids = [m.id for m, _ in sending]
            order = await self._stored_order(lane, batch_id, ids) if stored else None
            if order is not None:
                sending.sort(key=lambda one: order[one[0].id])  # as first sent
            elif stored:
                # Part of the stored batch only, whose id names other events: the
                # part moves to a batch of its own (see the module docstring).
                batch_id, stored = new_batch_id(started), False
            structlog.contextvars.bind_contextvars(batch_id=batch_id)
            if not stored:
                await self._assign(lane, batch_id, ids)
            attempt_no = max(m.attempts for m, _ in sending) + 1
            batch = batch_of(batch_id, [m.event for m, _ in sending], [b for _, b in sending])
            try:
                result = await attempts.sender.attempt_batch(sub, batch, attempt=attempt_no)
            except Exception as exc:
                log.exception("batch attempt raised; recorded as a failed attempt")
                result = attempts.failed(exc, started)
            log.debug("batch attempt", size=batch.size, attempt=attempt_no, outcome=result.outcome)
            await attempts.settle(lane, [m for m, _ in sending], started, result)
            recorded.update(m.id for m, _ in sending)
        finally:
            attempts.ended(lane, key, [m.id for m in members if m.id not in recorded])

    async def _stored_order(
        self, lane: Lane, batch_id: str, ids: list[str]
    ) -> dict[str, int] | None:
        """Each delivery's place in ``batch_id`` when these are exactly its stored
        members; None when they are not (or the store cannot say: a new id is safe).

        They are leased to this instance, so nobody else sends the batch's other
        members meanwhile.
        """
        try:
            stored = await self._store.batch_members(batch_id)
        except StoreError as exc:
            log.warning("cannot read batch membership", subscription=lane.name, error=str(exc))
            return None
        if sorted(stored) != sorted(ids):
            return None
        return {delivery_id: n for n, delivery_id in enumerate(stored)}

    async def _assign(self, lane: Lane, batch_id: str, ids: list[str]) -> None:
        try:
            await self._store.assign_batch(batch_id, ids)
        except StoreError as exc:
            # Sent all the same; should it fail, its retry goes under a new batch id.
            log.warning("cannot store batch membership", subscription=lane.name, error=str(exc))
