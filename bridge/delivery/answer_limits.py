"""The limits of a receiver's answer, and the meter that holds its header block to them.

llhttp (through httptools) sets no limit of its own, and httptools joins a
header value piece by piece before it calls back: a receiver sending one
endless header line, or header lines without end, would make it hold all of
them. So the header block is measured here on the raw bytes as they arrive,
before the parser sees them, and the exchange fails at the first limit:

=========================  ===========  ===================================
what                       limit        the attempt fails with
=========================  ===========  ===================================
the status line            8 KB         ``status line over 8 KB``
one header line            8 KB         ``answer header line over 8 KB``
header lines of an answer  100          ``more than 100 answer headers``
the whole header block     64 KB        ``answer headers over 64 KB``
=========================  ===========  ===================================

A line's size counts its CRLF (8 KB is 8,190 bytes of text, aiohttp's
limit too). The header blocks of interim (1xx) answers count toward the
64 KB of the answer they precede, so interim answers without end stop too.

Counting is a few C-level passes over each read (``find``, ``count``)
while the header block is incomplete, and nothing once it is: no Python
loop per byte or per line on the delivery hot path.
"""

from __future__ import annotations

__all__ = [
    "DRAIN_LIMIT",
    "HEADER_LINE_LIMIT",
    "HEADER_LINE_TOO_LONG",
    "HEAD_LIMIT",
    "HEAD_TOO_LARGE",
    "MAX_HEADERS",
    "STATUS_LINE_LIMIT",
    "STATUS_LINE_TOO_LONG",
    "TOO_MANY_HEADERS",
    "TRAILERS_TOO_LARGE",
    "TRAILER_LIMIT",
    "HeadMeter",
]

_KB = 1024
STATUS_LINE_LIMIT = 8 * _KB
HEADER_LINE_LIMIT = 8 * _KB
MAX_HEADERS = 100
HEAD_LIMIT = 64 * _KB
TRAILER_LIMIT = 64 * _KB
DRAIN_LIMIT = 64 * _KB
"""After the kept part of a body, read (and drop) this much more so the connection can be reused."""

STATUS_LINE_TOO_LONG = "status line over 8 KB"
HEADER_LINE_TOO_LONG = "answer header line over 8 KB"
TOO_MANY_HEADERS = "more than 100 answer headers"
HEAD_TOO_LARGE = "answer headers over 64 KB"
TRAILERS_TOO_LARGE = "answer trailers over 64 KB"

_END = b"\r\n\r\n"  # llhttp insists on CRLF, so a header block ends exactly here
# A block's lines: the status line, the header lines, the empty line that ends it.
_MOST_LINES = MAX_HEADERS + 2
_SHORTER_LINE_LIMIT = min(STATUS_LINE_LIMIT, HEADER_LINE_LIMIT)


class HeadMeter:
    """Measures the header blocks of one exchange as their bytes arrive.

    :meth:`scan` takes each read while a header block is open and says where
    in it the block ends, or which limit it breaks; :meth:`restart` begins a
    new exchange.
    """

    __slots__ = ("_line", "_lines", "_tail", "_total")

    def __init__(self) -> None:
        self._total = 0  # bytes of every header block of this exchange
        self._lines = 0  # complete lines of the block being read
        self._line = 0  # bytes of its line in progress
        self._tail = b""  # its last bytes, to find an end split across two reads

    def restart(self) -> None:
        """A new exchange: nothing counted yet."""
        self._total = 0
        self._next_block()

    def scan(self, data: bytes) -> tuple[int, str | None]:
        """Count ``data`` as header-block bytes.

        Returns where the block ends in ``data`` (the index just past its
        empty line, or -1 when it goes on past ``data``) and the limit it
        breaks (``None`` within them). Bytes past the end are not counted:
        they are a body, or the next (final) answer's block, scanned anew.
        """
        if self._tail:
            end = self._end_across(data)
        else:
            end = data.find(_END)
            if end >= 0:
                end += len(_END)
        block = data if end < 0 else data[:end]
        size = len(block)
        self._total += size
        if self._line + size < _SHORTER_LINE_LIMIT and self._total <= HEAD_LIMIT:
            # No line here can reach a line limit: only the lines are counted.
            refusal = self._count_lines(block)
        else:
            refusal = self._count(block)
        if refusal is None:
            if end >= 0:
                self._next_block()
            elif size >= 3:
                self._tail = block[-3:]
            else:
                self._tail = (self._tail + block)[-3:]
        return end, refusal

    def _next_block(self) -> None:
        self._lines = 0
        self._line = 0
        self._tail = b""

    def _end_across(self, data: bytes) -> int:
        """The end in ``data``, when the block's last bytes may hold its start."""
        at = (self._tail + data[:3]).find(_END)
        if at >= 0:  # an end split across reads comes before any in data
            return at + len(_END) - len(self._tail)
        at = data.find(_END)
        return at + len(_END) if at >= 0 else -1

    def _count_lines(self, block: bytes) -> str | None:
        last = block.rfind(b"\n")
        if last < 0:
            self._line += len(block)
            return None
        self._lines += block.count(b"\n")
        self._line = len(block) - last - 1
        return TOO_MANY_HEADERS if self._lines > _MOST_LINES else None

    def _count(self, block: bytes) -> str | None:
        size = len(block)
        first = block.find(b"\n")
        if first < 0:  # the line in progress goes on
            self._line += size
            return self._open_line_refusal() or self._total_refusal()
        if self._line + first + 1 > self._line_limit():
            return self._line_refusal()
        last = block.rfind(b"\n")
        if size - last - 1 >= HEADER_LINE_LIMIT:  # the line left open is a header line
            return HEADER_LINE_TOO_LONG
        if self._total > HEAD_LIMIT:  # after the line limits: they name the cause better
            return HEAD_TOO_LARGE
        # Lines wholly inside this read: only a stretch longer than the limit can hold
        # one over it, and the stretch is within the 64 KB just checked.
        if last - first > HEADER_LINE_LIMIT and _longest(block[first + 1 : last]) > (
            HEADER_LINE_LIMIT
        ):
            return HEADER_LINE_TOO_LONG
        return self._count_lines(block)

    def _open_line_refusal(self) -> str | None:
        """The limit a line still in progress already breaks (its line end is yet to come)."""
        return self._line_refusal() if self._line >= self._line_limit() else None

    def _line_limit(self) -> int:
        return STATUS_LINE_LIMIT if self._lines == 0 else HEADER_LINE_LIMIT

    def _line_refusal(self) -> str:
        return STATUS_LINE_TOO_LONG if self._lines == 0 else HEADER_LINE_TOO_LONG

    def _total_refusal(self) -> str | None:
        return HEAD_TOO_LARGE if self._total > HEAD_LIMIT else None


def _longest(lines: bytes) -> int:
    """The longest of ``lines`` (LF-separated, without the last LF), its LF counted."""
    return max(map(len, lines.split(b"\n"))) + 1
