"""The header-block meter of the lean client: exact limits, whatever the reads look like.

The meter counts raw bytes before the parser sees them, so its verdict must not
depend on how TCP cut the answer into reads: every split of a block gets the
same verdict as the block in one read.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.delivery.answer_limits import (
    HEAD_LIMIT,
    HEAD_TOO_LARGE,
    HEADER_LINE_LIMIT,
    HEADER_LINE_TOO_LONG,
    MAX_HEADERS,
    STATUS_LINE_LIMIT,
    STATUS_LINE_TOO_LONG,
    TOO_MANY_HEADERS,
    HeadMeter,
)
from tests.support.answers import STATUS, block, header, numbered, padded_block, status_line


def verdict(data: bytes, cuts: list[int] | None = None) -> tuple[int, str | None]:
    """Where the meter finds the block's end in ``data`` (fed in pieces cut at ``cuts``)."""
    meter = HeadMeter()
    offset = 0
    for piece in _pieces(data, cuts or []):
        end, refusal = meter.scan(piece)
        if refusal is not None:
            return -1, refusal
        if end >= 0:
            return offset + end, None
        offset += len(piece)
    return -1, None


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (block(*numbered(MAX_HEADERS)), None),
        (block(*numbered(MAX_HEADERS + 1)), TOO_MANY_HEADERS),
        (block(header("X-Long", HEADER_LINE_LIMIT)), None),
        (block(header("X-Long", HEADER_LINE_LIMIT + 1)), HEADER_LINE_TOO_LONG),
        (status_line(STATUS_LINE_LIMIT) + b"\r\n", None),
        (status_line(STATUS_LINE_LIMIT + 1) + b"\r\n", STATUS_LINE_TOO_LONG),
    ],
    ids=["100 headers", "101 headers", "8 KB line", "8 KB + 1", "8 KB status", "8 KB + 1 status"],
)
def test_each_limit_at_its_exact_boundary(data: bytes, expected: str | None) -> None:
    end, refusal = verdict(data)
    assert refusal == expected
    if expected is None:
        assert end == len(data)


def test_the_whole_block_at_its_exact_boundary() -> None:
    assert verdict(padded_block(HEAD_LIMIT)) == (HEAD_LIMIT, None)
    assert verdict(padded_block(HEAD_LIMIT + 1)) == (-1, HEAD_TOO_LARGE)


def test_a_block_without_end_is_refused_before_it_is_whole() -> None:
    meter = HeadMeter()
    piece = b"X-Flood: 1\r\n" * 10
    refusal = None
    reads = 0
    while refusal is None and reads < 100:
        _, refusal = meter.scan(STATUS if reads == 0 else piece)
        reads += 1
    assert refusal == TOO_MANY_HEADERS
    assert reads == 12  # the 101st header line, not a byte of the stream past it
    endless_line = HeadMeter()
    assert endless_line.scan(STATUS + b"X-Big: ")[1] is None
    # 8,191 bytes could still end in a LF within the limit; 8,192 cannot.
    assert endless_line.scan(b"a" * (HEADER_LINE_LIMIT - 8))[1] is None
    assert endless_line.scan(b"a")[1] == HEADER_LINE_TOO_LONG


def test_bytes_after_the_block_are_not_counted() -> None:
    data = block(b"Content-Length: 70000\r\n") + b"\n" * 70_000
    assert verdict(data) == (len(data) - 70_000, None)


def test_interim_blocks_count_toward_the_answers_64_kb() -> None:
    meter = HeadMeter()
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    scans = [meter.scan(interim) for _ in range(HEAD_LIMIT // len(interim) + 1)]
    assert all(end == len(interim) for end, _ in scans[:-1])
    assert scans[-1][1] == HEAD_TOO_LARGE
    meter.restart()  # the next exchange starts from nothing
    assert meter.scan(interim) == (len(interim), None)


_blocks = st.sampled_from(
    [
        block(*numbered(MAX_HEADERS)),
        block(*numbered(MAX_HEADERS + 1)),
        block(header("X-Long", HEADER_LINE_LIMIT), *numbered(3)),
        block(*numbered(3), header("X-Long", HEADER_LINE_LIMIT + 1), *numbered(3)),
        status_line(STATUS_LINE_LIMIT + 1) + b"\r\n",
        padded_block(HEAD_LIMIT),
        padded_block(HEAD_LIMIT + 1),
        block(b"Content-Length: 4\r\n") + b"\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
)


@given(_blocks, st.lists(st.integers(min_value=1, max_value=HEAD_LIMIT + 64), max_size=40))
def test_the_verdict_does_not_depend_on_how_the_block_was_read(
    data: bytes, cuts: list[int]
) -> None:
    assert verdict(data, cuts) == verdict(data)


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=30))
def test_an_end_split_across_reads_is_found(cuts: list[int]) -> None:
    data = block(b"A: 1\r\n", b"B: 2\r\n") + b"body"
    assert verdict(data, cuts) == (len(data) - 4, None)


def test_a_huge_line_is_named_as_such_in_a_read_past_64_kb() -> None:
    huge_header = STATUS + b"X-Big: " + b"a" * (4 * HEAD_LIMIT)
    assert HeadMeter().scan(huge_header)[1] == HEADER_LINE_TOO_LONG
    huge_status = b"HTTP/1.1 200 " + b"O" * (4 * HEAD_LIMIT)
    assert HeadMeter().scan(huge_status)[1] == STATUS_LINE_TOO_LONG
