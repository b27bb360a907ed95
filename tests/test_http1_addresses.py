"""The lean client's pool across a receiver's addresses: Happy Eyeballs, no second lookup.

A name resolves (here: a fixed answer of the guard's resolver) to several
addresses. The first one is a real blackhole on ::1: a listener that never
accepts, whose one-connection backlog is filled, so the kernel drops every
further SYN and a connect to it hangs as it would over a broken IPv6 route.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.delivery.http1 import TLS_UNTRUSTED
from bridge.delivery.pool import HAPPY_EYEBALLS_DELAY, Pool
from bridge.errors import HttpFailure
from tests.support.raw_http import WAIT, RawServer, Serve, replies

HOST = "hook.test"  # never looked up: the fixed answer below is all the pool gets


class FixedAnswer(AbstractResolver):
    """A resolver whose answer is a fixed list of addresses; it counts the lookups."""

    def __init__(self, *addresses: tuple[str, int]) -> None:
        self.addresses = addresses
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=at,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for address, at in self.addresses
        ]

    async def close(self) -> None:
        pass


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _filled_listener() -> Iterator[int]:
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener,
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as filler,
    ):
        listener.bind(("::1", 0))
        listener.listen(0)  # room for one connection that is never accepted
        port = listener.getsockname()[1]
        filler.connect(("::1", port))  # takes that room
        yield port


@pytest.fixture
async def blackhole() -> AsyncIterator[int]:
    """A port on ::1 where SYNs are dropped; checked to hang, so the premise is true."""
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with _filled_listener() as port:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.open_connection("::1", port), 0.5)
        yield port


def _pool(resolver: AbstractResolver, port: int, tls: ssl.SSLContext | bool = False) -> Pool:
    scheme = "https" if tls else "http"
    return Pool(
        f"{scheme}://{HOST}:{port}/hook", tls=tls, resolver=resolver, guarded=False, limit=2
    )


def _port(server: RawServer) -> int:
    return int(server.url.split(":")[2].split("/")[0])


async def test_a_blackholed_first_address_costs_the_delay_not_the_attempt(
    raw_server: Serve, blackhole: int
) -> None:
    server = await raw_server(replies())
    resolver = FixedAnswer(("::1", blackhole), ("127.0.0.1", _port(server)))
    pool = _pool(resolver, _port(server))
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        async with asyncio.timeout(WAIT):  # the attempt's timeout: not reached
            answer = await pool.post(b"{}", {}, 0)
        waited = loop.time() - started
    finally:
        await pool.close()
    assert answer.status == 204
    # The second address was connected to, and only once the first had had its turn.
    assert (server.connections, len(server.requests)) == (1, 1)
    assert waited >= HAPPY_EYEBALLS_DELAY * 0.8
    assert resolver.lookups == 1


async def test_connecting_to_a_blackhole_alone_ends_at_the_attempts_timeout(
    blackhole: int,
) -> None:
    pool = _pool(FixedAnswer(("::1", blackhole)), blackhole)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await pool.post(b"{}", {}, 0)
        assert pool.connections == 0
    finally:
        await pool.close()


async def test_an_address_failing_tls_is_left_out_and_the_next_one_serves(
    raw_server: Serve,
) -> None:
    authority = trustme.CA()
    wrong = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("other.test").configure_cert(wrong)
    right = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOST).configure_cert(right)
    impostor = await raw_server(replies(), wrong)
    server = await raw_server(replies(), right)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    both = FixedAnswer(("127.0.0.1", _port(impostor)), ("127.0.0.1", _port(server)))
    pool = _pool(both, _port(server), client)
    alone = _pool(FixedAnswer(("127.0.0.1", _port(impostor))), _port(impostor), client)
    try:
        assert (await asyncio.wait_for(pool.post(b"{}", {}, 0), WAIT)).status == 204
        with pytest.raises(HttpFailure, match=TLS_UNTRUSTED):
            await asyncio.wait_for(alone.post(b"{}", {}, 0), WAIT)
    finally:
        await pool.close()
        await alone.close()
    assert (len(impostor.requests), len(server.requests)) == (0, 1)


async def test_every_address_refused_names_the_refusal() -> None:
    closed = []
    for _ in range(2):  # ports that were just free: nothing listens there
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed.append(("127.0.0.1", sock.getsockname()[1]))
    pool = _pool(FixedAnswer(*closed), closed[0][1])
    try:
        with pytest.raises(HttpFailure, match="connection refused"):
            await asyncio.wait_for(pool.post(b"{}", {}, 0), WAIT)
    finally:
        await pool.close()
