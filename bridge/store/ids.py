"""Delivery ids: ``dlv_`` + a time-ordered random id.

The id is a ULID: 48 bits of milliseconds then 80 random bits, written in
Crockford's base32. Unlike RFC 4648 base32, that alphabet is in ASCII order,
so ids sort by creation time (to the millisecond) as plain strings; the store
pages "newest first" on the primary key alone because of it.
"""

from __future__ import annotations

import base64
import os

__all__ = ["DELIVERY_ID_PREFIX", "new_delivery_id", "new_delivery_ids"]

DELIVERY_ID_PREFIX = "dlv_"

_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789abcdefghjkmnpqrstvwxyz"
# base64.b32encode is C code; re-spelling its output in Crockford's alphabet keeps
# the bit layout (MSB first, 5 bits a letter) and so keeps the time order.
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _CROCKFORD)
_MILLIS_MASK = (1 << 48) - 1
_RANDOM_BYTES = 10


def _prefix(now: float) -> bytes:
    return (int(now * 1000) & _MILLIS_MASK).to_bytes(6, "big")


def _encode(raw: bytes) -> str:
    # 16 bytes → 26 letters and 6 padding characters, which are dropped.
    return DELIVERY_ID_PREFIX + base64.b32encode(raw)[:26].translate(_TO_CROCKFORD).decode("ascii")


def new_delivery_id(now: float, entropy: bytes | None = None) -> str:
    """A fresh delivery id for a delivery created at ``now`` (epoch seconds)."""
    rest = entropy if entropy is not None else os.urandom(_RANDOM_BYTES)
    return _encode(_prefix(now) + rest[:_RANDOM_BYTES])


def new_delivery_ids(now: float, count: int) -> list[str]:
    """``count`` fresh ids at once: one call for randomness instead of one per id."""
    prefix = _prefix(now)
    pool = os.urandom(_RANDOM_BYTES * count)
    return [
        _encode(prefix + pool[i : i + _RANDOM_BYTES])
        for i in range(0, _RANDOM_BYTES * count, _RANDOM_BYTES)
    ]
