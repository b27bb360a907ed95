"""The lean HTTP/1.1 client against raw asyncio servers on 127.0.0.1: framing and connections.

The servers (:mod:`tests.support.raw_http`) speak HTTP by hand, so a test can
cut an answer anywhere, frame it any way and count connections exactly.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from typing import Any

import aiohttp
import pytest

from bridge.core.events import Event
from bridge.core.formats import FORMATS, Encoded, encode_json
from bridge.delivery.answer_limits import (
    HEAD_LIMIT,
    HEAD_TOO_LARGE,
    HEADER_LINE_LIMIT,
    HEADER_LINE_TOO_LONG,
    MAX_HEADERS,
    STATUS_LINE_LIMIT,
    STATUS_LINE_TOO_LONG,
    TOO_MANY_HEADERS,
    TRAILERS_TOO_LARGE,
)
from bridge.delivery.http1 import DRAIN_LIMIT
from bridge.delivery.pool import Pool
from bridge.errors import HttpFailure
from tests.support.answers import EMPTY, block, header, numbered, padded_block, status_line
from tests.support.raw_http import (
    WAIT,
    Reply,
    Serve,
    held,
    replies,
    scripted_answer,
    send,
    subscription,
)
from tests.support.waiting import wait_until

# ---------------------------------------------------------------- bodies and framing


async def test_request_line_host_and_length(raw_server: Serve, sender_for: Any) -> None:
    server = await raw_server(replies())
    sub = subscription(server.url, headers={"X-Api-Key": "k-123456"})
    result = await send(await sender_for(sub), sub)
    assert result.outcome == "delivered"
    head, body = server.requests[0]
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /hook?x=1 HTTP/1.1"
    port = server.url.split(":")[2].split("/")[0]
    assert f"Host: 127.0.0.1:{port}" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert "X-Api-Key: k-123456" in lines
    assert body.startswith(b'{"')


async def test_credentials_in_the_url_are_sent_as_basic_auth(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(replies())
    sub = subscription(server.url.replace("http://", "http://hook%20user:p%40ss@"))
    assert (await send(await sender_for(sub), sub)).outcome == "delivered"
    lines = server.requests[0][0].decode("latin-1").split("\r\n")
    expected = base64.b64encode(b"hook user:p@ss").decode()
    assert f"Authorization: Basic {expected}" in lines
    assert not any(line.startswith("Host:") and "@" in line for line in lines)


async def test_chunked_answer_with_repeated_headers(raw_server: Serve) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Tag: a\r\nx-tag: b\r\n"
        b"Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    server = await raw_server(replies(Reply(chunked), Reply(chunked)))
    pool = Pool(server.url, tls=False, resolver=aiohttp.DefaultResolver(), guarded=False, limit=2)
    try:
        answers = [await pool.post(b"{}", {}, 1024) for _ in range(2)]
    finally:
        await pool.close()
    for answer in answers:
        assert (answer.status, answer.body) == (200, b"hello world")
        assert answer.headers.getall("X-TAG") == ["a", "b"]
        assert answer.headers.get("content-type") == "text/plain"
    assert server.connections == 1  # a complete chunked answer keeps the connection


async def test_close_delimitedanswer(raw_server: Serve, sender_for: Any) -> None:
    until_close = Reply(scripted_answer("200 OK", body=b"all of it", length=False), close=True)
    # A transfer coding other than chunked last: still delimited by the close.
    gzip_coded = Reply(
        scripted_answer("200 OK", "Transfer-Encoding: gzip", body=b"all of it", length=False),
        close=True,
    )
    server = await raw_server(replies(until_close, gzip_coded))
    sub = subscription(server.url)
    sender = await sender_for(sub)
    first = await send(sender, sub)
    assert (first.outcome, first.response_body) == ("delivered", b"all of it")
    second = await send(sender, sub)
    assert (second.outcome, second.response_body) == ("delivered", b"all of it")
    assert (await send(sender, sub)).outcome == "delivered"
    assert server.connections == 3  # each close-delimited answer ended its connection


async def test_interim_answers_are_skipped_and_204_has_no_body(
    raw_server: Serve, sender_for: Any
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = await raw_server(replies(Reply(interim + scripted_answer("201 Created", body=b"ok"))))
    sub = subscription(server.url)
    sender = await sender_for(sub)
    created = await send(sender, sub)
    assert (created.outcome, created.status_code, created.response_body) == (
        "delivered",
        201,
        b"ok",
    )
    for _ in range(3):
        empty = await send(sender, sub)
        assert (empty.status_code, empty.response_body) == (204, b"")
    assert server.connections == 1


async def test_retry_after_and_content_type_reach_the_classification(
    raw_server: Serve, sender_for: Any
) -> None:
    busy = scripted_answer(
        "429 Too Many Requests", "Retry-After: 7", "Content-Type: text/plain", body=b"slow"
    )
    server = await raw_server(replies(Reply(busy)))
    sub = subscription(server.url)
    result = await send(await sender_for(sub), sub)
    assert (result.outcome, result.error, result.retry_after) == ("failed", "HTTP 429", 7.0)
    assert result.content_type == "text/plain"
    assert result.response_excerpt == "slow"


async def test_connection_close_answer_is_not_reused(raw_server: Serve, sender_for: Any) -> None:
    closing = Reply(scripted_answer("200 OK", "Connection: close"))
    server = await raw_server(replies(closing, then=closing))
    sub = subscription(server.url)
    sender = await sender_for(sub)
    for attempt in (1, 2, 3):
        assert (await send(sender, sub, attempt)).outcome == "delivered"
    assert server.connections == 3


async def test_a_body_beyond_the_drain_is_cut_and_the_connection_dropped(
    raw_server: Serve, sender_for: Any
) -> None:
    huge = Reply(scripted_answer("200 OK", body=b"y" * (2 * DRAIN_LIMIT + 8192)))
    small = Reply(scripted_answer("200 OK", body=b"z" * 9000))
    server = await raw_server(replies(huge, small, small))
    sub = subscription(server.url)
    sender = await sender_for(sub, kept=100)
    results = [await send(sender, sub, n) for n in (1, 2, 3)]
    assert [r.outcome for r in results] == ["delivered"] * 3
    assert [r.response_body for r in results] == [b"y" * 100, b"z" * 100, b"z" * 100]
    # The huge body costs its connection; a small one past the cap is drained and kept.
    assert server.connections == 2


# ---------------------------------------------------------------- connections


async def test_five_hundred_posts_use_one_connection(raw_server: Serve, sender_for: Any) -> None:
    server = await raw_server(replies())
    sub = subscription(server.url, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    sender = await sender_for(sub)
    outcomes = {(await send(sender, sub, n)).outcome for n in range(1, 501)}
    assert outcomes == {"delivered"}
    assert len(server.requests) == 500
    assert server.connections == 1


async def test_never_more_connections_than_max_in_flight(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(held)
    sub = subscription(server.url, max_in_flight=3, timeout="10s")
    sender = await sender_for(sub)
    attempts = [asyncio.create_task(send(sender, sub, n)) for n in range(1, 13)]
    await wait_until(lambda: len(server.requests) == 3, timeout=WAIT, message="three requests")
    assert server.open_now == 3
    server.release.set()
    results = await asyncio.wait_for(asyncio.gather(*attempts), WAIT)
    assert [r.outcome for r in results] == ["delivered"] * 12
    assert server.connections == 3
    assert server.most_open == 3


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", "the server closed the connection without a response"),
        (b"", "the server closed the connection without a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "the response body was cut off"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "the response body was cut off",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "the server's answer is not valid HTTP/1.1"),
    ],
)
async def test_a_broken_answer_fails_and_the_next_attempt_connects_anew(
    raw_server: Serve, sender_for: Any, cut: bytes, reason: str
) -> None:
    server = await raw_server(replies(Reply(cut, close=True)))
    sub = subscription(server.url)
    sender = await sender_for(sub)
    broken = await send(sender, sub)
    assert broken.outcome == "failed"
    assert broken.status_code is None
    assert (broken.error or "").startswith(reason)
    assert (await send(sender, sub, 2)).outcome == "delivered"
    assert server.connections == 2


async def test_a_slow_server_times_out_and_loses_the_connection(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(held)
    sub = subscription(server.url, timeout="200ms")
    sender = await sender_for(sub)
    result = await send(sender, sub)
    assert not server.release.is_set()  # the attempt ended on our timeout
    assert (result.outcome, result.error) == ("failed", "timeout after 200ms")
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")
    server.release.set()
    assert (await send(sender, sub, 2)).outcome == "delivered"
    assert server.connections == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\r\nInjected: 1", "header x-device-note has a value with CR, LF or NUL"),
        ("nul\x00", "header x-device-note has a value with CR, LF or NUL"),
        ("snowman \u2603", "header x-device-note has a value with characters outside latin-1"),
    ],
)
async def test_an_unsendable_header_fails_the_attempt_and_sends_nothing(
    raw_server: Serve, sender_for: Any, monkeypatch: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    def noted(event: Event) -> Encoded:  # a format plugin copying device data into a header
        encoded = encode_json(event)
        return Encoded(encoded.body, encoded.content_type, {"x-device-note": value})

    monkeypatch.setitem(FORMATS, "noted", noted)
    server = await raw_server(replies())
    sub = subscription(server.url, format="noted")
    result = await send(await sender_for(sub), sub)
    assert result.outcome == "failed"
    assert (result.error or "").startswith(reason)
    assert server.connections == 0


async def test_idle_connections_close_and_close_ends_them_all(raw_server: Serve) -> None:
    server = await raw_server(replies())
    pool = Pool(
        server.url,
        tls=False,
        resolver=aiohttp.DefaultResolver(),
        guarded=False,
        limit=4,
        idle_timeout=0.2,
    )
    try:
        await asyncio.gather(*(pool.post(b"{}", {}, 0) for _ in range(4)))
        assert pool.connections == server.connections
        await wait_until(lambda: pool.connections == 0, timeout=WAIT, message="idle close")
        await wait_until(
            lambda: server.closed_by_peer == server.connections, timeout=WAIT, message="closes"
        )
        await pool.post(b"{}", {}, 0)
        assert pool.connections == 1
    finally:
        await pool.close()
    assert pool.connections == 0


async def test_sender_close_closes_its_connections(raw_server: Serve, sender_for: Any) -> None:
    server = await raw_server(replies())
    sub = subscription(server.url)
    sender = await sender_for(sub)
    assert (await send(sender, sub)).outcome == "delivered"
    await sender.close()
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")


async def test_a_changed_subscription_retires_its_connections(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(replies())
    first = subscription(server.url, headers={"x-version": "1"})
    sender = await sender_for(first)
    assert (await send(sender, first)).outcome == "delivered"
    second = subscription(server.url, headers={"x-version": "2"})
    sender.reconfigure([second])
    assert (await send(sender, second)).outcome == "delivered"
    # The retired pool closes once nothing is in flight on it.
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")
    assert server.connections == 2


# ---------------------------------------------------------------- answer limits

_LIMITS = [
    (block(*numbered(99), EMPTY), None),
    (block(*numbered(100), EMPTY), TOO_MANY_HEADERS),
    (block(header("X-Long", HEADER_LINE_LIMIT), EMPTY), None),
    (block(header("X-Long", HEADER_LINE_LIMIT + 1), EMPTY), HEADER_LINE_TOO_LONG),
    (block(EMPTY, status=status_line(STATUS_LINE_LIMIT)), None),
    (block(EMPTY, status=status_line(STATUS_LINE_LIMIT + 1)), STATUS_LINE_TOO_LONG),
    (padded_block(HEAD_LIMIT, EMPTY), None),
    (padded_block(HEAD_LIMIT + 1, EMPTY), HEAD_TOO_LARGE),
]


@pytest.mark.parametrize(
    ("head", "reason"),
    _LIMITS,
    ids=[
        "100 headers",
        "101 headers",
        "8 KB header line",
        "8 KB + 1 header line",
        "8 KB status line",
        "8 KB + 1 status line",
        "64 KB of headers",
        "64 KB + 1 of headers",
    ],
)
async def test_each_answer_limit_at_its_exact_boundary(
    raw_server: Serve, sender_for: Any, head: bytes, reason: str | None
) -> None:
    server = await raw_server(replies(Reply(head)))
    sub = subscription(server.url)
    sender = await sender_for(sub)
    result = await send(sender, sub)
    if reason is None:
        assert (result.outcome, result.status_code) == ("delivered", 200), result.error
    else:
        assert (result.outcome, result.status_code, result.error) == ("failed", None, reason)
    # Within the limits the connection is kept; over them it is dropped.
    assert (await send(sender, sub, 2)).outcome == "delivered"
    assert server.connections == (1 if reason is None else 2)


async def test_the_kept_headers_are_the_answers_within_the_limits(raw_server: Serve) -> None:
    server = await raw_server(replies(Reply(block(*numbered(99), EMPTY))))
    pool = Pool(server.url, tls=False, resolver=aiohttp.DefaultResolver(), guarded=False, limit=1)
    try:
        answer = await pool.post(b"{}", {}, 0)
    finally:
        await pool.close()
    assert len(answer.headers) == MAX_HEADERS
    assert answer.headers["X-H98"] == "v"


async def test_interim_answers_without_end_break_the_64_kb(
    raw_server: Serve, sender_for: Any
) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    flood = interim * (HEAD_LIMIT // len(interim) + 1) + scripted_answer("200 OK")
    server = await raw_server(replies(Reply(flood)))
    sub = subscription(server.url)
    result = await send(await sender_for(sub), sub)
    assert (result.outcome, result.error) == ("failed", HEAD_TOO_LARGE)


async def test_trailers_are_dropped_and_an_endless_one_fails(
    raw_server: Serve, sender_for: Any
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
    with_trailers = Reply(chunked + b"X-Sum: 1\r\nX-Other: 2\r\n\r\n")
    # A megabyte comes in several reads: the trailer is cut in the first ones after 64 KB.
    endless = Reply(chunked + b"X-Sum: " + b"a" * (1024 * 1024))
    server = await raw_server(replies(with_trailers, endless))
    pool = Pool(server.url, tls=False, resolver=aiohttp.DefaultResolver(), guarded=False, limit=1)
    try:
        answer = await pool.post(b"{}", {}, 100)
        assert (answer.status, answer.body) == (200, b"ok")
        assert "X-Sum" not in answer.headers
        with pytest.raises(HttpFailure, match=TRAILERS_TOO_LARGE):
            await asyncio.wait_for(pool.post(b"{}", {}, 100), WAIT)
    finally:
        await pool.close()


async def test_a_declared_ten_gigabytes_keeps_the_cap_and_drops_the_connection(
    raw_server: Serve, sender_for: Any
) -> None:
    huge = Reply(scripted_answer("200 OK", "Content-Length: 10737418240", length=False))
    server = await raw_server(replies(Reply(huge.data + b"y" * (3 * DRAIN_LIMIT))))
    sub = subscription(server.url)
    sender = await sender_for(sub, kept=100)
    result = await send(sender, sub)
    # The status counts; the body is the cap's worth; the connection cannot be drained.
    assert (result.outcome, result.status_code, result.response_body) == (
        "delivered",
        200,
        b"y" * 100,
    )
    assert (await send(sender, sub, 2)).outcome == "delivered"
    assert server.connections == 2


async def test_a_gzip_answer_is_kept_as_its_bytes(raw_server: Serve, sender_for: Any) -> None:
    packed = gzip.compress(b'{"ok": true}')
    answer = scripted_answer("200 OK", "Content-Encoding: gzip", body=packed)
    server = await raw_server(replies(Reply(answer)))
    sub = subscription(server.url)
    result = await send(await sender_for(sub), sub)
    assert (result.outcome, result.response_body) == ("delivered", packed)
    assert b"accept-encoding" not in server.requests[0][0].lower()
