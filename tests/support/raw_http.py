"""Raw HTTP/1.1 servers on 127.0.0.1 for the lean client's tests.

aiohttp's server cannot cut an answer mid-headers, send a close-delimited or
an interim answer, or count connections exactly, so these servers speak HTTP
by hand: each reads a request (headers, ``Content-Length`` body) and writes
the bytes a test scripted for it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.config import Settings, Subscription
from bridge.core.events import Event
from bridge.delivery.send import AttemptResult, Sender

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


Serve = Callable[..., Awaitable[RawServer]]  # (respond, tls=None)


@asynccontextmanager
async def raw_servers() -> AsyncIterator[Serve]:
    """Start raw servers on 127.0.0.1 (``https`` with a TLS context); all stop at the end."""
    servers: list[tuple[asyncio.Server, RawServer]] = []

    async def start(respond: Respond, tls: ssl.SSLContext | None = None) -> RawServer:
        raw = RawServer(respond)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        raw.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook?x=1"
        servers.append((server, raw))
        return raw

    try:
        yield start
    finally:
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


def subscription(url: str, **extra: Any) -> Subscription:
    return Subscription.model_validate({"name": "crm", "url": url, **extra})


EVENT = Event(
    id="evt_raw1",
    type="device.online",
    timestamp=datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC),
    source="mqtt://broker/devices/dev-1/status",
    data={"device_id": "dev-1"},
)


SenderFor = Callable[..., Awaitable[Sender]]


@asynccontextmanager
async def senders() -> AsyncIterator[SenderFor]:
    """Make started senders for subscriptions (private targets allowed); all close at the end."""
    made: list[Sender] = []

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
        made.append(sender)
        return sender

    try:
        yield make
    finally:
        for sender in made:
            await sender.close()


async def send(sender: Sender, subscription: Subscription, attempt: int = 1) -> AttemptResult:
    return await sender.attempt(subscription, EVENT, delivery_id="dlv_raw", attempt=attempt)


def scripted_answer(status: str, *headers: str, body: bytes = b"", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
