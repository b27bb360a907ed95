"""Which new deliveries of ordered subscriptions may be sent at once, from memory.

An ordered subscription sends a device's deliveries one at a time, in the order
they were stored. A delivery just stored may skip the claim round trip only if
it is the head of its device's queue: no earlier delivery of the same
subscription and device is pending (waiting for a retry, in flight, or held in
memory), and it is the first of its device in its batch. Deliveries naming no
device are not held back.

Only a store with one writer decides heads (SQLite: the write lock covers the
check and the insert). With several instances on PostgreSQL, two concurrent
batches could each see no earlier delivery, so there the claim decides, as
before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from bridge.store.rows import Accepted, Delivery

__all__ = ["choose_heads", "ordered_pairs"]


def ordered_pairs(fresh: Iterable[Accepted], ordered: Collection[str]) -> list[tuple[str, str]]:
    """The (subscription, device) queues a batch adds to, for its ordered subscriptions."""
    pairs: set[tuple[str, str]] = set()
    for item in fresh:
        device = item.event.device_id
        if device is not None:
            pairs.update((sub, device) for sub in item.subscriptions if sub in ordered)
    return sorted(pairs)


def choose_heads(
    deliveries: Sequence[Delivery],
    ordered: Collection[str],
    waiting: Collection[tuple[str, str]],
) -> frozenset[str]:
    """The ids among ``deliveries`` (in storage order) of ordered subscriptions that head
    their device's queue; ``waiting`` holds the queues with a delivery pending before
    this batch."""
    heads: set[str] = set()
    seen: set[tuple[str, str]] = set(waiting)
    for delivery in deliveries:
        if delivery.subscription not in ordered:
            continue
        device = delivery.event.device_id
        if device is None:
            heads.add(delivery.id)
            continue
        queue = (delivery.subscription, device)
        if queue not in seen:
            seen.add(queue)
            heads.add(delivery.id)
    return frozenset(heads)
