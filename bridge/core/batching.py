"""Batches: several envelopes in one body, ``{"type": "batch", "id": …, "events": […]}``.

Pure: the caller mints the batch id and chooses the deliveries; this module
says how many of them fit in one body (:func:`fitting`) and writes the body
(:func:`batch_of`). Each envelope is the event's own, encoded by the
subscription's format (a JSON document: ``json`` or structured
``cloudevents``), so it keeps its event id and receivers deduplicate per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from bridge.core.events import Event
from bridge.core.formats import encoder_for
from bridge.errors import DeliveryError

__all__ = ["BATCH_ID_PREFIX", "Batch", "batch_of", "envelope", "fitting", "overhead"]

BATCH_ID_PREFIX = "bat_"


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch body, ready to sign and send."""

    id: str
    body: bytes
    events: tuple[Event, ...]  # in the body's order

    @property
    def first(self) -> Event:
        """The event whose trace context the POST carries."""
        return self.events[0]

    @property
    def size(self) -> int:
        """How many envelopes the body holds."""
        return len(self.events)


def envelope(event: Event, format_name: str) -> bytes:
    """The event's envelope as the subscription's format writes it."""
    encoder = encoder_for(format_name)
    if encoder is None:
        raise DeliveryError(f"format '{format_name}' is not available")
    return encoder(event).body


def overhead(batch_id: str) -> int:
    """The bytes of a batch body around its envelopes (without the commas between them)."""
    return len(_wrap(batch_id, b""))


def fitting(sizes: Sequence[int], *, batch_id: str, max_events: int, max_bytes: int) -> int:
    """How many of the leading envelopes (of these ``sizes``) go in one batch: at most
    ``max_events``, the body at most ``max_bytes``; never fewer than one, so an
    envelope larger than ``max_bytes`` on its own is sent alone."""
    total = overhead(batch_id)
    count = 0
    for size in sizes[:max_events]:
        added = size + (1 if count else 0)
        if count and total + added > max_bytes:
            break
        total += added
        count += 1
    return max(count, 1) if sizes else 0


def batch_of(batch_id: str, events: Sequence[Event], envelopes: Sequence[bytes]) -> Batch:
    """The batch body of these envelopes (in this order)."""
    if not events or len(events) != len(envelopes):
        raise ValueError("a batch needs one envelope per event, and at least one")
    return Batch(batch_id, _wrap(batch_id, b",".join(envelopes)), tuple(events))


def _wrap(batch_id: str, joined: bytes) -> bytes:
    head = b'{"type":"batch","id":' + orjson.dumps(batch_id) + b',"events":['
    return head + joined + b"]}"
