"""The lean HTTP/1.1 client against raw asyncio servers on 127.0.0.1.

aiohttp's server cannot cut an answer mid-headers, send a close-delimited or
an interim answer, or count connections exactly, so these servers speak
HTTP by hand: each reads a request (headers, ``Content-Length`` body) and
writes the bytes a test scripted for it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from bridge.config import Settings, Subscription
from bridge.core.events import Event
from bridge.core.formats import FORMATS, Encoded, encode_json
from bridge.delivery.http1 import DRAIN_LIMIT
from bridge.delivery.pool import Pool
from bridge.delivery.send import AttemptResult, Sender
from tests.support.waiting import wait_until

WAIT = 5.0  # the longest a server holds a request; a bound, never a pause
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


@dataclass
class Reply:
    """What a raw server writes for one request; ``close`` ends the connection after it."""

    data: bytes
    close: bool = False


Respond = Callable[["RawServer", int], Awaitable[Reply]]


@dataclass
class RawServer:
    """A hand-written HTTP/1.1 server that counts connections and requests."""

    respond: Respond
    url: str = ""
    connections: int = 0  # ever accepted
    open_now: int = 0
    most_open: int = 0
    closed_by_peer: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_peer += 1
                    return
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                reply = await self.respond(self, len(self.requests))
                writer.write(reply.data)
                await writer.drain()
                if reply.close:
                    return
        finally:
            self.open_now -= 1
            writer.close()


Serve = Callable[[Respond], Awaitable[RawServer]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Serve]:
    servers: list[tuple[asyncio.Server, RawServer]] = []

    async def start(respond: Respond, tls: ssl.SSLContext | None = None) -> RawServer:
        raw = RawServer(respond)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        raw.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook?x=1"
        servers.append((server, raw))
        return raw

    yield start
    for server, raw in servers:
        raw.release.set()
        server.close()
        await server.wait_closed()


NO_CONTENT_REPLY = Reply(NO_CONTENT)


def replies(*scripted: Reply, then: Reply = NO_CONTENT_REPLY) -> Respond:
    """Answer the first requests as scripted, every later one with ``then``."""

    async def respond(server: RawServer, number: int) -> Reply:
        return scripted[number - 1] if number <= len(scripted) else then

    return respond


async def held(server: RawServer, number: int) -> Reply:
    """Answer only when the test releases the server (bounded by WAIT)."""
    try:
        await asyncio.wait_for(server.release.wait(), WAIT)
    except TimeoutError:
        return Reply(b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n")
    return Reply(NO_CONTENT)


def _subscription(url: str, **extra: Any) -> Subscription:
    return Subscription.model_validate({"name": "crm", "url": url, **extra})


EVENT = Event(
    id="evt_raw1",
    type="device.online",
    timestamp=datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC),
    source="mqtt://broker/devices/dev-1/status",
    data={"device_id": "dev-1"},
)


@pytest.fixture
async def sender_for() -> AsyncIterator[Callable[..., Awaitable[Sender]]]:
    senders: list[Sender] = []

    async def make(*subscriptions: Subscription, kept: int = 2048) -> Sender:
        settings = Settings.model_validate(
            {
                "subscriptions": [s.model_dump() for s in subscriptions],
                "security": {"allow_private_targets": True},
                "limits": {"response_body_kept": kept},
            }
        )
        sender = Sender(settings, user_agent="hookbridge/test")
        await sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


async def _send(sender: Sender, subscription: Subscription, attempt: int = 1) -> AttemptResult:
    return await sender.attempt(subscription, EVENT, delivery_id="dlv_raw", attempt=attempt)


def _answer(status: str, *headers: str, body: bytes = b"", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------- bodies and framing


async def test_request_line_host_and_length(raw_server: Serve, sender_for: Any) -> None:
    server = await raw_server(replies())
    sub = _subscription(server.url, headers={"X-Api-Key": "k-123456"})
    result = await _send(await sender_for(sub), sub)
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
    sub = _subscription(server.url.replace("http://", "http://hook%20user:p%40ss@"))
    assert (await _send(await sender_for(sub), sub)).outcome == "delivered"
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


async def test_close_delimited_answer(raw_server: Serve, sender_for: Any) -> None:
    until_close = Reply(_answer("200 OK", body=b"all of it", length=False), close=True)
    server = await raw_server(replies(until_close))
    sub = _subscription(server.url)
    sender = await sender_for(sub)
    first = await _send(sender, sub)
    assert (first.outcome, first.response_body) == ("delivered", b"all of it")
    assert (await _send(sender, sub)).outcome == "delivered"
    assert server.connections == 2  # the first connection ended with its answer


async def test_interim_answers_are_skipped_and_204_has_no_body(
    raw_server: Serve, sender_for: Any
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    server = await raw_server(replies(Reply(interim + _answer("201 Created", body=b"ok"))))
    sub = _subscription(server.url)
    sender = await sender_for(sub)
    created = await _send(sender, sub)
    assert (created.outcome, created.status_code, created.response_body) == (
        "delivered",
        201,
        b"ok",
    )
    for _ in range(3):
        empty = await _send(sender, sub)
        assert (empty.status_code, empty.response_body) == (204, b"")
    assert server.connections == 1


async def test_retry_after_and_content_type_reach_the_classification(
    raw_server: Serve, sender_for: Any
) -> None:
    busy = _answer(
        "429 Too Many Requests", "Retry-After: 7", "Content-Type: text/plain", body=b"slow"
    )
    server = await raw_server(replies(Reply(busy)))
    sub = _subscription(server.url)
    result = await _send(await sender_for(sub), sub)
    assert (result.outcome, result.error, result.retry_after) == ("failed", "HTTP 429", 7.0)
    assert result.content_type == "text/plain"
    assert result.response_excerpt == "slow"


async def test_connection_close_answer_is_not_reused(raw_server: Serve, sender_for: Any) -> None:
    closing = Reply(_answer("200 OK", "Connection: close"))
    server = await raw_server(replies(closing, then=closing))
    sub = _subscription(server.url)
    sender = await sender_for(sub)
    for attempt in (1, 2, 3):
        assert (await _send(sender, sub, attempt)).outcome == "delivered"
    assert server.connections == 3


async def test_a_body_beyond_the_drain_is_cut_and_the_connection_dropped(
    raw_server: Serve, sender_for: Any
) -> None:
    huge = Reply(_answer("200 OK", body=b"y" * (2 * DRAIN_LIMIT + 8192)))
    small = Reply(_answer("200 OK", body=b"z" * 9000))
    server = await raw_server(replies(huge, small, small))
    sub = _subscription(server.url)
    sender = await sender_for(sub, kept=100)
    results = [await _send(sender, sub, n) for n in (1, 2, 3)]
    assert [r.outcome for r in results] == ["delivered"] * 3
    assert [r.response_body for r in results] == [b"y" * 100, b"z" * 100, b"z" * 100]
    # The huge body costs its connection; a small one past the cap is drained and kept.
    assert server.connections == 2


def test_framing_and_reuse_under_uvloop() -> None:
    """``hookbridge run`` uses uvloop when installed: its transports behave the same."""
    uvloop = pytest.importorskip("uvloop")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    script = replies(
        Reply(chunked),
        Reply(_answer("200 OK", body=b"sized")),
        Reply(_answer("200 OK", body=b"to the end", length=False), close=True),
    )

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        raw = RawServer(script)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        resolver = aiohttp.DefaultResolver()
        pool = Pool(
            f"http://127.0.0.1:{port}/", tls=False, resolver=resolver, guarded=False, limit=2
        )
        try:
            answers = [await pool.post(b"{}", {"X-A": "1"}, 1024) for _ in range(4)]
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()
        return [(a.status, a.body) for a in answers], raw.connections

    answers, connections = uvloop.run(scenario())
    assert answers == [(200, b"ok"), (200, b"sized"), (200, b"to the end"), (204, b"")]
    assert connections == 2


# ---------------------------------------------------------------- connections


async def test_five_hundred_posts_use_one_connection(raw_server: Serve, sender_for: Any) -> None:
    server = await raw_server(replies())
    sub = _subscription(server.url, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    sender = await sender_for(sub)
    outcomes = {(await _send(sender, sub, n)).outcome for n in range(1, 501)}
    assert outcomes == {"delivered"}
    assert len(server.requests) == 500
    assert server.connections == 1


async def test_never_more_connections_than_max_in_flight(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(held)
    sub = _subscription(server.url, max_in_flight=3, timeout="10s")
    sender = await sender_for(sub)
    attempts = [asyncio.create_task(_send(sender, sub, n)) for n in range(1, 13)]
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
    sub = _subscription(server.url)
    sender = await sender_for(sub)
    broken = await _send(sender, sub)
    assert broken.outcome == "failed"
    assert broken.status_code is None
    assert (broken.error or "").startswith(reason)
    assert (await _send(sender, sub, 2)).outcome == "delivered"
    assert server.connections == 2


async def test_a_slow_server_times_out_and_loses_the_connection(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(held)
    sub = _subscription(server.url, timeout="200ms")
    sender = await sender_for(sub)
    result = await _send(sender, sub)
    assert not server.release.is_set()  # the attempt ended on our timeout
    assert (result.outcome, result.error) == ("failed", "timeout after 200ms")
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")
    server.release.set()
    assert (await _send(sender, sub, 2)).outcome == "delivered"
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
    sub = _subscription(server.url, format="noted")
    result = await _send(await sender_for(sub), sub)
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
    sub = _subscription(server.url)
    sender = await sender_for(sub)
    assert (await _send(sender, sub)).outcome == "delivered"
    await sender.close()
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")


async def test_a_changed_subscription_retires_its_connections(
    raw_server: Serve, sender_for: Any
) -> None:
    server = await raw_server(replies())
    first = _subscription(server.url, headers={"x-version": "1"})
    sender = await sender_for(first)
    assert (await _send(sender, first)).outcome == "delivered"
    second = _subscription(server.url, headers={"x-version": "2"})
    sender.reconfigure([second])
    assert (await _send(sender, second)).outcome == "delivered"
    # The retired pool closes once nothing is in flight on it.
    await wait_until(lambda: server.closed_by_peer == 1, timeout=WAIT, message="the close")
    assert server.connections == 2


# ---------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Pki:
    server: ssl.SSLContext
    ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    authority.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    client = authority.issue_cert("hookbridge-client")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    authority.cert_pem.write_to_path(str(ca))
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    return Pki(server, ca, cert, key)


async def test_https_with_a_client_certificate(
    raw_server: Serve, sender_for: Any, pki: Pki
) -> None:
    server = await raw_server(replies(), pki.server)
    with_cert = _subscription(
        server.url,
        ca_file=str(pki.ca),
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
    )
    without = _subscription(server.url, ca_file=str(pki.ca)).model_copy(update={"name": "bare"})
    sender = await sender_for(with_cert, without)
    for attempt in (1, 2):
        assert (await _send(sender, with_cert, attempt)).outcome == "delivered"
    refused = await _send(sender, without)
    assert refused.outcome == "failed"
    assert refused.error is not None
    assert "TLS" in refused.error or "closed the connection" in refused.error
    assert len(server.requests) == 2
    # The good attempts shared one connection; the refused handshake never got to HTTP.
    assert server.connections == 1


async def test_https_by_name_sends_the_name_as_sni(
    raw_server: Serve, sender_for: Any, tmp_path: Path
) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    names: list[str | None] = []

    def record(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    server = await raw_server(replies(), context)
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    sub = _subscription(server.url.replace("127.0.0.1", "localhost"), ca_file=str(ca))
    result = await _send(await sender_for(sub), sub)
    assert result.outcome == "delivered", result.error
    assert names == ["localhost"]
