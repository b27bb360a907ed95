"""One HTTP/1.1 connection of the lean webhook client: a request out, an answer in.

The delivery hot path posts small signed bodies to the same receivers again
and again. A general-purpose client spends most of its time on features a
webhook POST never uses, so the bridge sends its requests through this module
instead (proxied subscriptions and OAuth2 token requests keep aiohttp):

* :func:`encode_request` turns the request into bytes, refusing any header
  name or value HTTP cannot carry (CR, LF, NUL, a non-latin-1 character...)
  before a byte is sent;
* :class:`Connection` is an :class:`asyncio.Protocol` that writes the request
  and parses the answer with ``httptools`` (llhttp): ``Content-Length``,
  chunked and close-delimited bodies, interim 1xx answers skipped, no body for
  204/304.

An answer is bounded wherever a receiver could make it grow:

* its header block, measured on the raw bytes before the parser sees them
  (:mod:`bridge.delivery.answer_limits`: status line and header line 8 KB,
  100 headers, 64 KB in all); over a limit the exchange fails with a reason
  naming it, and the connection is closed;
* its body, kept up to a cap (the caller's: the excerpt for push, the pipe
  cap for pipe). Up to ``DRAIN_LIMIT`` (64 KB) more is read and dropped so
  the connection can be reused; past that the answer ends with what was kept
  (its status counts) and the connection is closed. So a declared 10 GB
  ``Content-Length``, a chunked body that never ends and a close-delimited
  (HTTP/1.0) body that never ends all cost at most the cap plus 64 KB read;
* a chunked body's trailers, which are dropped: a trailer section over 64 KB
  fails the exchange;
* time, by the caller: the attempt's timeout covers the whole exchange, so a
  header block or body that trickles or never ends stops there.

A body is kept as the bytes that came: the bridge never sends
``Accept-Encoding``, and a ``Content-Encoding: gzip`` answer is kept as it is,
never decompressed. An answer cut by a reset or a close before its framing
says it is whole fails (``CUT_OFF``); one that is not HTTP/1.1 fails naming
the parser's complaint.

What one exchange holds of an answer is at most twice its body cap (the kept
pieces and their join), 64 KB of parsed headers, and the parser's and the
transport's buffers: a read is at most 256 KB, the parser joins at most one
header line (8 KB) or one trailer (64 KB and a read). That is under 1 MB plus
twice the cap: for push with the default excerpt about 1 MB, for pipe (a 1 MB
cap) about 3 MB.

A connection is reusable only after a complete answer that allows keep-alive;
:mod:`bridge.delivery.pool` keeps the reusable ones.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
from collections.abc import Mapping
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from bridge.delivery.answer_limits import DRAIN_LIMIT, TRAILER_LIMIT, TRAILERS_TOO_LARGE, HeadMeter
from bridge.errors import HttpFailure

__all__ = [
    "CUT_OFF",
    "DRAIN_LIMIT",
    "NO_RESPONSE",
    "TLS_FAILED",
    "TLS_UNTRUSTED",
    "Answer",
    "Connection",
    "connect_failure",
    "encode_request",
]

NO_RESPONSE = "the server closed the connection without a response"
CUT_OFF = "the response body was cut off"
TLS_UNTRUSTED = "TLS verification failed: the certificate is not trusted for this host"
TLS_FAILED = "TLS handshake failed"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSENDABLE = re.compile(r"[\r\n\x00]")
# Framing is the client's own: what the sender's headers say about it is dropped.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


class Answer:
    """A receiver's final answer: status, headers (case-insensitive, repeats kept), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def encode_request(
    head: str,
    host: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    authorization: str | None = None,
) -> bytes:
    """The request's bytes: ``head`` (the request line), ``Host``, the headers, the body.

    ``authorization`` (credentials in the URL) replaces any Authorization header,
    as aiohttp does. Raises :class:`HttpFailure` for a header HTTP cannot carry,
    naming the header but never quoting its value (a value may be a secret).
    """
    lines = [head]
    if authorization is not None:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        lines.append(f"Authorization: {authorization}\r\n")
    own_host = True
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise HttpFailure(f"header name {name[:60]!r} is not a valid HTTP header name")
        if _UNSENDABLE.search(value):
            raise HttpFailure(f"header {name} has a value with CR, LF or NUL, which HTTP refuses")
        lowered = name.lower()
        if lowered in _FRAMING:
            continue
        if lowered == "host":
            own_host = False
        lines.append(f"{name}: {value}\r\n")
    if own_host:
        lines.append(f"Host: {host}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    text = "".join(lines)
    try:
        return text.encode("latin-1") + body
    except UnicodeEncodeError:
        for name, value in headers.items():
            if any(ord(char) > 0xFF for char in value):  # latin-1: the first 256 code points
                raise HttpFailure(
                    f"header {name} has a value with characters outside latin-1, which HTTP refuses"
                ) from None
        raise HttpFailure("the request line or Host cannot be encoded") from None


def connect_failure(error: OSError) -> str:
    """The reason for a connection that could not be opened (TLS included)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return TLS_UNTRUSTED
    if isinstance(error, ssl.SSLError):
        return TLS_FAILED
    if error.errno == errno.ECONNREFUSED:
        return "connection refused"
    # Happy Eyeballs words several addresses' different errors in the text alone.
    return f"connection failed: {error.strerror or str(error)[:200] or type(error).__name__}"


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._cap = 0
        self._status = 0
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._chunks: list[bytes] = []
        self._size = 0
        self._dropped = 0
        self._headers_done = False
        self._until_close = False  # a close-delimited body
        self._meter = HeadMeter()
        self._head_open = False  # the final answer's header block is still to come
        self._heard = False  # a byte of an answer to the current request arrived
        self._trailers: int | None = None  # bytes that may be trailers, when they may be
        self.answers = 0  # complete answers on this connection: reused once above 0
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0

    # ------------------------------------------------------------ the pool's side

    @property
    def usable(self) -> bool:
        """Open and ready for another request."""
        transport = self._transport
        return (
            self.reusable
            and not self.closed
            and transport is not None
            and not transport.is_closing()
        )

    @property
    def lost_unanswered(self) -> bool:
        """A reused connection lost the request before a byte of an answer came back.

        What a receiver closing an idle kept-alive connection as the request
        went out looks like: the request can go again on a new connection.
        """
        return self.answers > 0 and not self._heard

    def exchange(self, request: bytes, cap: int) -> asyncio.Future[Answer]:
        """Write ``request``; the future is the answer, its body kept up to ``cap`` bytes."""
        self._heard = False
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            raise HttpFailure(NO_RESPONSE)
        self.reusable = False  # until a complete answer allows keep-alive
        self._cap = cap
        self._start_message()
        self._meter.restart()
        self._head_open = True
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        transport.write(request)
        return waiter

    def close(self) -> None:
        """Close (abort) the connection; a pending answer fails."""
        self.reusable = False
        if self._transport is not None and not self.closed:
            self._transport.abort()
        self.closed = True
        self._fail(NO_RESPONSE)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are transports.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: the connection cannot be trusted
            self.close()
            return
        self._heard = True
        try:
            if self._head_open:
                data = self._feed_head(data)
            if data:
                self._feed_body(data)
        except httptools.HttpParserUpgrade:
            self._broken("the server switched protocols")
        except httptools.HttpParserError as exc:
            self._broken(f"the server's answer is not valid HTTP/1.1 ({_parse_error(exc)})")

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is None:
            return
        if self._until_close and exc is None:
            self._complete(keep_alive=False)
        elif self._headers_done:
            self._fail(CUT_OFF)
        elif isinstance(exc, ssl.SSLError):
            self._fail(f"TLS error: {exc.reason or type(exc).__name__}")
        else:
            self._fail(NO_RESPONSE)

    # ------------------------------------------------------------ feeding the parser

    def _feed_head(self, data: bytes) -> bytes:
        """Feed header blocks, each measured before the parser sees it; returns what follows.

        Interim answers' blocks come before the final one's, possibly in one read;
        what follows the final block (its body) is returned unmeasured.
        """
        while self._head_open and self._waiter is not None:
            end, refusal = self._meter.scan(data)
            if refusal is not None:
                self._broken(refusal)
                return b""
            if end < 0:
                self._parser.feed_data(data)
                return b""
            self._parser.feed_data(data[:end])
            data = data[end:]
            if not data:
                break
        return data

    def _feed_body(self, data: bytes) -> None:
        if self._trailers is not None:  # after a chunk header, no chunk data yet
            self._trailers += len(data)
        self._parser.feed_data(data)
        # httptools joins a trailer's pieces as it does a header's: past the limit the
        # answer is dropped (a read more at most, as the last chunk's header and the
        # first trailers may come in one read, before they can be told apart).
        if self._trailers is not None and self._trailers > TRAILER_LIMIT:
            self._broken(TRAILERS_TOO_LARGE)

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:  # more than the one answer asked for
            self.close()
        self._start_message()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers_done:  # trailers are dropped
            self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._status = status = self._parser.get_status_code()
        if status < 200:
            return  # an interim answer: the final one follows
        self._head_open = False
        self._headers_done = True
        codings = self._headers.get("Transfer-Encoding", "")
        chunked = codings.rsplit(",", 1)[-1].strip().lower() == "chunked"
        framed = chunked or "Content-Length" in self._headers
        self._until_close = not framed and status not in (204, 304)

    def on_chunk_header(self) -> None:
        # The last chunk's header (size 0) is followed by trailers; any other by data.
        self._trailers = 0

    def on_body(self, body: bytes) -> None:
        self._trailers = None
        if self._waiter is None:
            return
        room = self._cap - self._size
        if room > 0:
            kept = body if len(body) <= room else body[:room]
            self._chunks.append(kept)
            self._size += len(kept)
            body = body[len(kept) :]
        self._dropped += len(body)
        if self._dropped > DRAIN_LIMIT:  # too much to drain: the answer ends at the cap
            self._complete(keep_alive=False)
            self.close()

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._start_message()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # ------------------------------------------------------------ internals

    def _start_message(self) -> None:
        self._status = 0
        self._headers = CIMultiDict()
        self._chunks = []
        self._size = 0
        self._dropped = 0
        self._headers_done = False
        self._until_close = False
        self._trailers = None

    def _complete(self, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        self.answers += 1
        self.reusable = keep_alive and not self.closed
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        waiter.set_result(Answer(self._status, CIMultiDictProxy(self._headers), body))

    def _fail(self, reason: str) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpFailure(reason))

    def _broken(self, reason: str) -> None:
        self._fail(reason)
        self.close()


def _parse_error(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
