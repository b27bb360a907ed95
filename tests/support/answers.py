"""Answer heads of exact sizes, for the tests of the lean client's limits."""

from __future__ import annotations

from bridge.delivery.answer_limits import HEADER_LINE_LIMIT

STATUS = b"HTTP/1.1 200 OK\r\n"
EMPTY = b"Content-Length: 0\r\n"


def header(name: str, size: int) -> bytes:
    """A header line of exactly ``size`` bytes, its CRLF included."""
    start = f"{name}: ".encode()
    return start + b"v" * (size - len(start) - 2) + b"\r\n"


def status_line(size: int) -> bytes:
    """A valid 200 status line of exactly ``size`` bytes (a long reason phrase)."""
    start = b"HTTP/1.1 200 "
    return start + b"O" * (size - len(start) - 2) + b"\r\n"


def numbered(count: int) -> list[bytes]:
    """``count`` small header lines."""
    return [f"X-H{n}: v\r\n".encode() for n in range(count)]


def block(*lines: bytes, status: bytes = STATUS) -> bytes:
    """A header block: the status line, ``lines``, the empty line."""
    return status + b"".join(lines) + b"\r\n"


def padded_block(total: int, *lines: bytes) -> bytes:
    """A header block of exactly ``total`` bytes: ``lines``, then padding under the line limit."""
    room = total - len(block(*lines))
    padding = []
    while room > 0:
        size = min(HEADER_LINE_LIMIT, room)
        if 0 < room - size < 16:  # leave room for one more whole header line
            size -= 16
        padding.append(header(f"X-P{len(padding)}", size))
        room -= size
    data = block(*lines, *padding)
    assert len(data) == total
    return data
