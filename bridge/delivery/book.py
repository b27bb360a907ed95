"""The lease book of one lane: which deliveries this instance holds, and where each is.

A delivery is *held* from the moment the lane takes it (handed over fresh
from ingest, or claimed from the store; either way leased to this instance)
until its attempt's result is committed, or it is given back to the store.
While held, a claim must not take it again. A held delivery is either
*waiting* (buffered, in the order it is to be sent) or *started* (an attempt
is in flight, or its result is being recorded).

Lease correctness depends on this bookkeeping alone, so one object keeps it
and nothing else changes it: the dispatcher owns one book per lane and asks
it to take, start, give back and settle deliveries.

For a lane that batches, the book also knows the stored batch of each waiting
delivery ("" for none): a retried batch goes again under its own id (see
:mod:`bridge.delivery.batching`).

Its size is bounded by the lane's capacity (:attr:`bridge.delivery.lane.Lane.capacity`):
every entry is removed when its delivery is settled, given back or let go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence

from bridge.store.rows import Delivery

__all__ = ["NO_BATCH", "LeaseBook"]

NO_BATCH = ""
"""The stored batch of a delivery that is in none."""


class LeaseBook:
    """Held deliveries of one lane: waiting in order, or started (see the module docstring)."""

    __slots__ = ("_batch_ids", "_batching", "_held", "_waiting")

    def __init__(self, *, batching: bool = False) -> None:
        self._waiting: deque[Delivery] = deque()
        self._held: set[str] = set()
        self._batching = batching
        self._batch_ids: dict[str, str] = {}

    # ------------------------------------------------------------ reading

    @property
    def held(self) -> int:
        """Deliveries held: waiting, and started but not yet settled."""
        return len(self._held)

    @property
    def waiting(self) -> Sequence[Delivery]:
        """The waiting deliveries in the order they are to be sent (do not change it)."""
        return self._waiting

    def holds(self, delivery_id: str) -> bool:
        return delivery_id in self._held

    def batch_of(self, delivery_id: str) -> str | None:
        """The stored batch of a waiting delivery ("" for none); None: not known yet."""
        return self._batch_ids.get(delivery_id)

    def unknown_batches(self) -> list[str]:
        """Waiting deliveries whose stored batch the lane has not looked up yet."""
        if not self._batching:
            return []
        return [d.id for d in self._waiting if d.id not in self._batch_ids]

    # ------------------------------------------------------------ taking

    def offer(self, delivery: Delivery) -> None:
        """A fresh delivery, just committed and leased to us: it is in no batch yet."""
        self._waiting.append(delivery)
        self._held.add(delivery.id)
        if self._batching:
            self._batch_ids[delivery.id] = NO_BATCH

    def take(self, claimed: Iterable[Delivery]) -> None:
        """What a claim returned; one already held (a claim raced a result) is skipped."""
        for delivery in claimed:
            if delivery.id not in self._held:
                self._waiting.append(delivery)
                self._held.add(delivery.id)

    def note_batches(self, found: Mapping[str, str], looked_up: Iterable[str]) -> None:
        """The stored batches of ``looked_up`` (absent from ``found``: in none)."""
        for delivery_id in looked_up:
            if delivery_id in self._held:
                self._batch_ids[delivery_id] = found.get(delivery_id, NO_BATCH)

    # ------------------------------------------------------------ starting

    def start_next(self) -> Delivery:
        """The first waiting delivery, now started (still held)."""
        delivery = self._waiting.popleft()
        self._batch_ids.pop(delivery.id, None)
        return delivery

    def start(self, ids: Collection[str]) -> None:
        """These waiting deliveries are started together (a batch); still held."""
        self._waiting = deque(d for d in self._waiting if d.id not in ids)
        for delivery_id in ids:
            self._batch_ids.pop(delivery_id, None)

    # ------------------------------------------------------------ letting go

    def give_back(self, ids: Collection[str]) -> list[str]:
        """Waiting deliveries the lane will not send now: no longer held. Returns
        their ids, for the caller to release in the store."""
        given = [d.id for d in self._waiting if d.id in ids]
        if given:
            self._waiting = deque(d for d in self._waiting if d.id not in ids)
            self._forget(given)
        return given

    def give_back_all(self) -> list[str]:
        """Every waiting delivery (paused, open circuit, stopping, retired lane)."""
        given = [d.id for d in self._waiting]
        self._waiting.clear()
        self._forget(given)
        return given

    def settle(self, ids: Iterable[str]) -> bool:
        """Started deliveries whose result is committed, or that ended without one
        (not sent, cancelled): no longer held. True when the lane held any."""
        before = len(self._held)
        self._held.difference_update(ids)
        return len(self._held) < before

    def _forget(self, ids: Iterable[str]) -> None:
        for delivery_id in ids:
            self._held.discard(delivery_id)
            self._batch_ids.pop(delivery_id, None)
