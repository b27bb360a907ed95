"""The lean client's connection pool: one per subscription endpoint.

A :class:`Pool` posts to one URL (a subscription's) over at most ``limit``
connections (the subscription's ``max_in_flight``, the cap of its adaptive
limit). Connections are kept alive and reused most-recent first, so under a
light load the others go idle and are closed after ``idle_timeout``;
:meth:`Pool.close` closes them all.

The addresses connected to are the target guard's: a host name is resolved by
the endpoint's resolver (:class:`bridge.delivery.targets.GuardedResolver` when
the guard is on) and the connection goes to an address it returned, so there
is no second lookup that could rebind the name; an IP literal is checked
directly. The addresses are raced with Happy Eyeballs (RFC 8305, through
``aiohappyeyeballs`` as aiohttp does): families interleaved, the next address
tried 250 ms after the previous one if it has not connected yet, so one
address that drops packets (an IPv6 route that goes nowhere) costs 250 ms, not
the attempt. TLS uses the subscription's context with the URL's host as SNI;
an address whose TLS handshake fails is left out and the others are tried.

A receiver may close an idle kept-alive connection just as a request goes
out on it. When a reused connection is lost before a byte of an answer came
back, the request (the same bytes, so the same ``webhook-id``) is sent once
more on a new connection, inside the same attempt, and ``on_resend`` is told.
A new connection that closes without an answer is not tried again: that is
the receiver's answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable, Mapping

import aiohappyeyeballs
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bridge.delivery.http1 import Answer, Connection, connect_failure, encode_request
from bridge.delivery.targets import check_target
from bridge.errors import HttpFailure

__all__ = ["HAPPY_EYEBALLS_DELAY", "IDLE_TIMEOUT", "Pool", "client_context"]

IDLE_TIMEOUT = 30.0
"""Seconds an unused connection stays open."""
HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds before the next address is tried while one is still connecting (RFC 8305's 250 ms)."""

_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_Peer = tuple[str, int] | tuple[str, int, int, int]  # what getpeername() returns


def client_context(tls: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The TLS context for a subscription's setting (see ``_ssl_for`` in the sender)."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    context = ssl.create_default_context()
    if not tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Pool:
    """Keep-alive connections to one URL, at most ``limit`` of them."""

    def __init__(
        self,
        url: str,
        *,
        tls: ssl.SSLContext | bool,
        resolver: AbstractResolver,
        guarded: bool,
        limit: int,
        idle_timeout: float = IDLE_TIMEOUT,
        on_resend: Callable[[], None] | None = None,
    ) -> None:
        target = URL(url)
        host = target.raw_host
        if host is None or target.port is None:
            raise HttpFailure("the URL is not valid")
        self._host = host
        self._port = target.port
        self._host_header = target.host_port_subcomponent or host
        self._head = f"POST {target.raw_path_qs or '/'} HTTP/1.1\r\n"
        # Credentials in the URL are sent as Basic auth (as aiohttp does), never in the Host.
        self._authorization: str | None = None
        if target.raw_user or target.raw_password:
            credentials = f"{target.user or ''}:{target.password or ''}".encode("latin-1")
            self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._tls = client_context(tls) if target.scheme == "https" else None
        self._resolver = resolver
        self._guarded = guarded
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[Connection] = []  # most recently used last
        self._open: set[Connection] = set()
        self._idle_timeout = idle_timeout
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._on_resend = on_resend

    @property
    def connections(self) -> int:
        """Connections open now (busy and idle)."""
        return len(self._open)

    async def post(self, body: bytes, headers: Mapping[str, str], cap: int) -> Answer:
        """POST ``body``; the answer's body is kept up to ``cap`` bytes.

        Raises :class:`HttpFailure` (nothing sent for a refused header),
        :class:`bridge.errors.TargetRefused` for a refused address, and what a
        cancellation raises; the caller bounds the time.
        """
        request = encode_request(
            self._head, self._host_header, headers, body, authorization=self._authorization
        )
        async with self._slots:
            connection = await self._connection()
            try:
                return await self._exchange(connection, request, cap)
            except HttpFailure:
                if not connection.lost_unanswered:
                    raise
            # The receiver closed the kept-alive connection as the request went out.
            if self._on_resend is not None:
                self._on_resend()
            return await self._exchange(await self._connect(), request, cap)

    async def close(self) -> None:
        """Close every connection, busy ones too."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        for connection in list(self._open):
            self._discard(connection)

    # ------------------------------------------------------------ connections

    async def _exchange(self, connection: Connection, request: bytes, cap: int) -> Answer:
        """One request on ``connection``; kept for the next if the answer allows it."""
        try:
            answer = await connection.exchange(request, cap)
        except BaseException:  # an error, a timeout, a cancellation: never reused
            self._discard(connection)
            raise
        if connection.usable and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
            self._schedule_sweep()
        else:
            self._discard(connection)
        return answer

    async def _connection(self) -> Connection:
        if self._closed:
            raise HttpFailure("the connection pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
            self._discard(connection)
        return await self._connect()

    async def _connect(self) -> Connection:
        infos = [_addr_info(address) for address in await self._addresses()]
        while True:
            sock = await _happy_eyeballs(infos)
            peer: _Peer | None = None
            try:
                peer = sock.getpeername()
                _, connection = await asyncio.get_running_loop().create_connection(
                    Connection,
                    sock=sock,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
            except OSError as exc:  # ssl.SSLError included: this address fails TLS
                sock.close()
                _leave_out(infos, peer, exc)
                continue
            if self._closed:
                connection.close()
                raise HttpFailure("the connection pool is closed")
            self._open.add(connection)
            return connection

    async def _addresses(self) -> list[ResolveResult]:
        """Where to connect: the guard's answer for a name, the literal itself for an IP."""
        try:
            literal = ipaddress.ip_address(self._host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            if self._guarded:
                check_target(self._host)
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [
                ResolveResult(
                    hostname=self._host,
                    host=self._host,
                    port=self._port,
                    family=family,
                    proto=0,
                    flags=_NUMERIC,
                )
            ]
        try:
            addresses = await self._resolver.resolve(self._host, self._port, socket.AF_UNSPEC)
        except OSError:
            addresses = []
        if not addresses:
            raise HttpFailure(f"DNS lookup of {self._host} failed")
        return addresses

    def _discard(self, connection: Connection) -> None:
        self._open.discard(connection)
        connection.close()

    # ------------------------------------------------------------ idle connections

    def _schedule_sweep(self) -> None:
        if self._sweeper is None and self._idle:
            oldest = self._idle[0].idle_since
            self._sweeper = asyncio.get_running_loop().call_at(
                oldest + self._idle_timeout, self._sweep
            )

    def _sweep(self) -> None:
        self._sweeper = None
        deadline = asyncio.get_running_loop().time() - self._idle_timeout
        keep: list[Connection] = []
        for connection in self._idle:
            if connection.idle_since <= deadline or not connection.usable:
                self._discard(connection)
            else:
                keep.append(connection)
        self._idle = keep
        self._schedule_sweep()


# ---------------------------------------------------------------- addresses


def _addr_info(address: ResolveResult) -> aiohappyeyeballs.AddrInfoType:
    """A guard-checked address as the ``getaddrinfo`` entry Happy Eyeballs takes (no lookup)."""
    host, port = address["host"], address["port"]
    if address["family"] == socket.AF_INET6 or ":" in host:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


async def _happy_eyeballs(infos: list[aiohappyeyeballs.AddrInfoType]) -> socket.socket:
    """A socket connected to the first of ``infos`` to answer (RFC 8305, as aiohttp races)."""
    try:
        return await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
        )
    except OSError as exc:
        raise HttpFailure(connect_failure(exc)) from None


def _leave_out(
    infos: list[aiohappyeyeballs.AddrInfoType], peer: _Peer | None, error: OSError
) -> None:
    """Drop the address whose TLS failed; with none left, the attempt fails with ``error``."""
    before = len(infos)
    if peer is not None:
        with contextlib.suppress(ValueError):  # not among them: no address is left to try
            aiohappyeyeballs.remove_addr_infos(infos, peer)
    if len(infos) == before:
        infos.clear()
    if not infos:
        raise HttpFailure(connect_failure(error)) from None
