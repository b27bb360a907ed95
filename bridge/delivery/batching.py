"""Batching: several deliveries of one subscription in one signed POST.

A subscription with ``batch:`` gets the same lane as any other (buffer,
in-flight limit, rate limit, circuit, Retry-After); what changes is what one
attempt carries. :class:`BatchingDispatcher` takes up to ``max_events``
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
from collections import deque
from collections.abc import Collection, Sequence

import structlog

from bridge.config.batch import BatchSettings
from bridge.core.batching import BATCH_ID_PREFIX, batch_of, envelope, fitting
from bridge.core.outcomes import AttemptResult
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.lane import Lane
from bridge.delivery.learning import Settled
from bridge.delivery.retention import too_old
from bridge.errors import StoreError
from bridge.logs import get_logger
from bridge.store.ids import new_delivery_id
from bridge.store.rows import Delivery

__all__ = ["BatchingDispatcher", "new_batch_id"]

log = get_logger("hookbridge.dispatch")

_NONE = ""  # in Lane.batch_ids: the delivery is in no stored batch


def new_batch_id(now: float) -> str:
    """A fresh batch id: ``bat_`` + a time-ordered random id (as delivery ids)."""
    return BATCH_ID_PREFIX + new_delivery_id(now, os.urandom(10)).removeprefix("dlv_")


class BatchingDispatcher(Dispatcher):
    """The dispatcher; lanes of subscriptions with ``batch:`` send batches."""

    def offer(
        self, deliveries: Sequence[Delivery], heads: Collection[str] = frozenset()
    ) -> list[str]:
        overflow = set(super().offer(deliveries, heads))
        for delivery in deliveries:
            lane = self.lanes.get(delivery.subscription)
            if lane is not None and delivery.id not in overflow:
                lane.batch_ids[delivery.id] = _NONE  # just committed: in no batch yet
        return list(overflow)

    async def _start_attempts(self, lane: Lane) -> None:
        batch = lane.subscription.batch
        if batch is None:
            await super()._start_attempts(lane)
            return
        while self._may_start(lane):
            if not await self._know_batches(lane):
                break
            chosen = await self._choose(lane, batch)
            if chosen is None:
                break  # a partial batch waits for more (see Lane.gather_until)
            batch_id, members, envelopes = chosen
            was_open = await self._admit(lane)
            if was_open is None:
                break  # open: deliveries wait in the buffer and the store, none dropped
            taken = {m.id for m in members}
            lane.buffer = deque(d for d in lane.buffer if d.id not in taken)
            stored = lane.batch_ids.get(members[0].id) == batch_id
            for member in members:
                lane.batch_ids.pop(member.id, None)
            attempt = self._attempt_batch(lane, batch_id, members, envelopes, stored=stored)
            self._launch(lane, batch_id, attempt, probe=was_open)

    async def _know_batches(self, lane: Lane) -> bool:
        """Look up the stored batch of buffered deliveries not known yet; False: not now."""
        unknown = [d.id for d in lane.buffer if d.id not in lane.batch_ids]
        if not unknown:
            return True
        try:
            found = await self._store.batches_of(unknown)
        except StoreError as exc:
            log.warning("cannot read batch membership", subscription=lane.name, error=str(exc))
            lane.poll_at = self._clock() + 1.0
            return False
        for delivery_id in unknown:
            lane.batch_ids[delivery_id] = found.get(delivery_id, _NONE)
        return True

    async def _choose(
        self, lane: Lane, settings: BatchSettings
    ) -> tuple[str, list[Delivery], list[bytes]] | None:
        """The next batch of the buffer: its id, members and their envelopes; None: wait.

        The buffer's first delivery decides: a member of a stored batch goes with
        the other buffered members of that batch, under its id (a retry); a new
        one with the other new ones, under a new id, once ``max_events`` are
        there or the first has waited ``max_wait``.
        """
        now = self._clock()
        ordered = lane.subscription.ordered
        group = lane.batch_ids.get(lane.buffer[0].id, _NONE)
        if group == _NONE:
            fresh = sum(1 for d in lane.buffer if lane.batch_ids.get(d.id) == _NONE)
            if lane.gather_until is None:
                lane.gather_until = now + settings.max_wait
            if fresh < settings.max_events and now < lane.gather_until and not self._stopping:
                return None
            lane.gather_until = None
        batch_id = group or new_batch_id(now)
        members: list[Delivery] = []
        envelopes: list[bytes] = []
        sizes: list[int] = []
        blocked: set[str] = set()  # devices whose next delivery must wait (ordered)
        left_behind: list[Delivery] = []
        for delivery in lane.buffer:
            device = delivery.event.device_id if ordered else None
            if device is not None and device in blocked:
                if any(m.event.device_id == device for m in members):
                    left_behind.append(delivery)
                continue
            fits = lane.batch_ids.get(delivery.id) == group
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
            elif not ordered and lane.batch_ids.get(delivery.id) == group:
                break  # full
        await self._leave_behind(lane, left_behind)
        return batch_id, members, envelopes

    async def _leave_behind(self, lane: Lane, deliveries: list[Delivery]) -> None:
        """Give back a device's deliveries that must wait for its batch in flight.

        Back in the store they are claimable again only once that batch is settled.
        """
        if not deliveries:
            return
        ids = {d.id for d in deliveries}
        lane.buffer = deque(d for d in lane.buffer if d.id not in ids)
        lane.held.difference_update(ids)
        for delivery_id in ids:
            lane.batch_ids.pop(delivery_id, None)
        try:
            await self._store.release(list(ids))
        except StoreError as exc:  # their leases run out; they are claimed again then
            log.warning("cannot release deliveries", subscription=lane.name, error=str(exc))

    # -- one batch ------------------------------------------------------------------

    async def _attempt_batch(
        self,
        lane: Lane,
        batch_id: str,
        members: list[Delivery],
        envelopes: list[bytes],
        *,
        stored: bool,
    ) -> None:
        sub = lane.subscription
        started = self._clock()
        key = batch_id  # the lane's name for this attempt (see _launch)
        recorded: set[str] = set()
        try:
            structlog.contextvars.bind_contextvars(subscription=sub.name)
            max_age = self._settings.retention.max_event_age
            sending: list[tuple[Delivery, bytes]] = []
            for member, body in zip(members, envelopes, strict=True):
                if too_old(member.age_start, now=started, max_event_age=max_age):
                    await self._record_too_old(lane, member, member.attempts + 1, started)
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
                result = await self._sender.attempt_batch(sub, batch, attempt=attempt_no)
            except Exception as exc:
                log.exception("batch attempt raised; recorded as a failed attempt")
                result = self._failed(exc, started)
            log.debug("batch attempt", size=batch.size, attempt=attempt_no, outcome=result.outcome)
            await self._settle_batch(lane, [m for m, _ in sending], attempt_no, started, result)
            recorded.update(m.id for m, _ in sending)
        finally:
            self._ended(lane, key, [m.id for m in members if m.id not in recorded])

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

    async def _settle_batch(
        self,
        lane: Lane,
        members: list[Delivery],
        attempt_no: int,
        started: float,
        result: AttemptResult,
    ) -> None:
        """Every member gets the attempt and one next state; the lane learns from it once."""
        now = self._clock()
        outcome = self._decide(result, attempt_no, now)
        settled = [
            Settled(member, result, outcome, member.attempts + 1, started, now)
            for member in members
        ]
        for one in settled:
            await self._record(lane, one)
        try:
            await self._learn(lane, settled[0])
            for one in settled:
                await self._count(lane, one)
        except Exception:
            log.exception("settling a batch's consequences failed; its results are kept")
