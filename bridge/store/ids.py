"""Delivery ids: ``dlv_`` + a time-ordered random id.

The id is a ULID: 48 bits of milliseconds (10 letters) then 80 random bits
(16 letters), written in Crockford's base32. Unlike RFC 4648 base32, that
alphabet is in ASCII order, so ids sort by creation time (to the millisecond)
as plain strings; the store pages "newest first" on the primary key alone
because of it.
"""

from __future__ import annotations

import base64
import os
import threading

__all__ = ["DELIVERY_ID_PREFIX", "new_delivery_id", "new_delivery_ids", "random_bytes"]

DELIVERY_ID_PREFIX = "dlv_"

_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789abcdefghjkmnpqrstvwxyz"
# base64.b32encode keeps the bit layout (MSB first, 5 bits a letter); re-spelt in
# Crockford's alphabet its output sorts like the bytes it encodes.
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _CROCKFORD)
_MILLIS_MASK = (1 << 48) - 1
_RANDOM_BYTES = 10  # 80 bits: exactly 16 letters, no padding
_RANDOM_LETTERS = 16


_POOL_SIZE = 4096
_pools = threading.local()


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the operating system's random source, drawn 4 KB at a time.

    Ids and trace ids need unpredictable, never-repeating bytes, not secrets; an
    event asks for three or four such draws, and one ``getrandom`` call for every
    few hundred of them costs far less than one each. Each thread keeps its own
    pool (the writer thread makes delivery ids, the event loop the others).
    """
    pool: bytearray | None = getattr(_pools, "pool", None)
    if pool is None or len(pool) < count:
        pool = bytearray(os.urandom(max(_POOL_SIZE, count)))
    taken = bytes(pool[:count])
    del pool[:count]
    _pools.pool = pool
    return taken


def _time_part(now: float) -> str:
    """48 bits of milliseconds as 10 letters (the top one carries 3 bits)."""
    millis = int(now * 1000) & _MILLIS_MASK
    return "".join(chr(_CROCKFORD[(millis >> shift) & 31]) for shift in range(45, -1, -5))


def _random_part(raw: bytes) -> str:
    return base64.b32encode(raw).translate(_TO_CROCKFORD).decode("ascii")


def new_delivery_id(now: float, entropy: bytes | None = None) -> str:
    """A fresh delivery id for a delivery created at ``now`` (epoch seconds)."""
    rest = entropy if entropy is not None else random_bytes(_RANDOM_BYTES)
    return DELIVERY_ID_PREFIX + _time_part(now) + _random_part(rest[:_RANDOM_BYTES])


def new_delivery_ids(now: float, count: int) -> list[str]:
    """``count`` fresh ids created at ``now``.

    The ingest hot path makes hundreds at once: the time part is spelt once and
    all the randomness is drawn and encoded in one call each.
    """
    head = DELIVERY_ID_PREFIX + _time_part(now)
    pool = _random_part(random_bytes(_RANDOM_BYTES * count))
    return [head + pool[i : i + _RANDOM_LETTERS] for i in range(0, len(pool), _RANDOM_LETTERS)]
