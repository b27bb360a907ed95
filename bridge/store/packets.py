"""Which broker redeliveries are copies of a message already committed: the packet log.

The broker sets DUP on a QoS 1 PUBLISH it sends again because it saw no
PUBACK for it. Our PUBACK goes out right after the commit, so a DUP message
can be a copy of a message we committed only when the connection it came on
ended between that commit and the PUBACK reaching the broker. The broker
sends it again on the next connection with the same packet identifier (MQTT
3.1.1 §4.4, MQTT 5 §4.4), and it had at most Receive-Maximum messages
unacknowledged at once.

So a DUP message is a duplicate only when it matches, by packet identifier
and content (a digest of topic and payload):

- a message received on the current connection and not yet acknowledged
  (in memory, see :mod:`bridge.ingest.client`);
- or the latest use of that packet identifier among the last Receive-Maximum
  messages committed, when that use came on an earlier connection of the
  same client id.

Anything else is new: two identical readings without a message id are two
events, even when the second is redelivered. Each commit appends one row to
the log (``ingest_packets``: the client id, a sequence number, the
connection, and the packed (identifier, digest) pairs of its messages); rows
past the window are pruned at once, so the log holds at most Receive-Maximum
rows per client id.

What this cannot see: a broker that hands a shared-subscription message to
another member after a member went away (the copy arrives on another client
id, with no DUP flag); when the device gave its own message ``id`` the event
id catches it, otherwise it is delivered twice. And a broker that reuses a
packet identifier at once for an identical message that was then never
committed: its redelivery looks like the earlier one (see docs/guarantees.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

from bridge.store.rows import Accepted, Packet, Rejection

__all__ = ["DIGEST_SIZE", "digest", "pack", "redelivered", "unpack"]

DIGEST_SIZE = 8
_ENTRY = struct.Struct(f">H{DIGEST_SIZE}s")


def digest(topic: str, payload: bytes) -> bytes:
    """The content of one message, as the packet log compares it."""
    hashed = hashlib.blake2b(digest_size=DIGEST_SIZE)
    hashed.update(topic.encode("utf-8", "surrogateescape"))
    hashed.update(b"\x00")
    hashed.update(payload)
    return hashed.digest()


def pack(accepted: Sequence[Accepted], rejected: Sequence[Rejection]) -> list[tuple[str, bytes]]:
    """The log rows of one commit, (connection, packed entry): every message that came
    in a PUBLISH with an identifier, by connection (a batch nearly always has one)."""
    entries: dict[str, list[bytes]] = {}
    for packet in [i.packet for i in accepted] + [r.packet for r in rejected]:
        if packet is not None:
            entries.setdefault(packet.connection, []).append(_ENTRY.pack(packet.id, packet.digest))
    return [(connection, b"".join(parts)) for connection, parts in entries.items()]


def unpack(connection: str, entry: bytes) -> list[Packet]:
    usable = len(entry) - len(entry) % _ENTRY.size
    return [Packet(i, connection, d) for i, d in _ENTRY.iter_unpack(entry[:usable])]


def redelivered(
    accepted: Sequence[Accepted], recent: Iterable[tuple[str, bytes]], *, window: int
) -> set[int]:
    """The positions in ``accepted`` of DUP messages that are copies of committed ones.

    ``recent`` is the log, newest row first: (connection, packed entry). Of each
    packet identifier only its latest use among the last ``window`` messages
    counts, and only when that use came on another connection than the DUP's.
    """
    latest: dict[int, Packet] = {}
    seen = 0
    for connection, entry in recent:
        if seen >= window:
            break
        for packet in reversed(unpack(connection, entry)):
            latest.setdefault(packet.id, packet)
            seen += 1
    found: set[int] = set()
    for position, item in enumerate(accepted):
        sent = item.packet
        if not item.redelivery or sent is None:
            continue
        use = latest.get(sent.id)
        if use is not None and use.connection != sent.connection and use.digest == sent.digest:
            found.add(position)
    return found
