"""Hostile webhook receivers: raw asyncio servers on 127.0.0.1, each misbehaving one way.

Each reads a request (its head and ``Content-Length`` body) and answers as its
misbehaviour says: header lines without end, one huge header line, a body
without end, a trickle, a reset in mid-body... Every loop is bounded in count
and in time (``HOLD``), and a receiver stops as soon as the bridge closes the
connection, so none outlives the test that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

HOLD = 20.0  # the longest a receiver keeps at it; the bridge's attempt timeout is far shorter
MEGABYTE = 1024 * 1024
_MOST_PIECES = 200_000  # a bound on any stream, whatever the time
STATUS = b"HTTP/1.1 200 OK\r\n"

# (reader, writer, number of the request on this connection) -> keep the connection?
Misbehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


@dataclass
class Hostile:
    """One hostile receiver: what it does, where it listens, what it saw."""

    name: str
    misbehave: Misbehaviour
    url: str = ""
    connections: int = 0
    requests: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            for number in range(1, 1000):
                if not await _read_request(reader):
                    return
                self.requests += 1
                if not await self.misbehave(reader, writer, number):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the bridge gave up on us: that is the point
        finally:
            self.tasks.discard(task)
            writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HOLD)
    except asyncio.IncompleteReadError:
        return False
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)
    return True


async def _hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection open, answering nothing more, until the bridge closes it."""
    await asyncio.wait_for(reader.read(1), HOLD)


async def _stream(
    writer: asyncio.StreamWriter, first: bytes, piece: bytes, *, pause: float = 0.0
) -> bool:
    """Write ``first``, then ``piece`` again and again until the bridge goes (or HOLD passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD
    writer.write(first)
    for _ in range(_MOST_PIECES):
        if loop.time() > deadline or writer.transport.is_closing():
            break
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)  # the trickle is the misbehaviour, not a wait
        writer.write(piece)
    return False


def _head(*headers: str) -> bytes:
    return STATUS + "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n"


async def endless_header_lines(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    return await _stream(w, STATUS, b"".join(b"X-Flood-%d: 1\r\n" % i for i in range(50)))


async def heavy_header_lines(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    return await _stream(w, STATUS, b"X-Heavy: " + b"h" * 1000 + b"\r\n")


async def megabyte_header_line(r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(STATUS + b"X-Big: " + b"a" * MEGABYTE + b"\r\n\r\n")
    await w.drain()
    await _hold(r)
    return False


async def megabyte_status_line(r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(b"HTTP/1.1 200 " + b"O" * MEGABYTE + b"\r\n\r\n")
    await w.drain()
    await _hold(r)
    return False


async def trickled_headers(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    return await _stream(w, STATUS + b"X-Slow: ", b"s", pause=0.5)


async def endless_chunked_body(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    chunk = b"1000\r\n" + b"c" * 0x1000 + b"\r\n"
    return await _stream(w, _head("Transfer-Encoding: chunked"), chunk)


async def stalled_length_body(r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(_head("Content-Length: 1000") + b"s" * 10)
    await w.drain()
    await _hold(r)
    return False


async def ten_gigabytes(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    return await _stream(w, _head(f"Content-Length: {10 * 1024**3}"), b"z" * 65536)


async def trickled_body(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    return await _stream(w, _head("Content-Length: 100"), b"t", pause=1.0)


async def reset_mid_body(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(_head("Content-Length: 1000") + b"r" * 100)
    await w.drain()
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    w.transport.abort()
    return False


CLOSE_DELIMITED = b"an HTTP/1.0 answer that ends when the connection closes"


async def http10_close_delimited(
    _r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int
) -> bool:
    w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + CLOSE_DELIMITED)
    await w.drain()
    return False  # the close ends the body


GZIPPED = gzip.compress(b'{"ok": true}')


async def gzip_encoded(_r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(_head("Content-Encoding: gzip", f"Content-Length: {len(GZIPPED)}") + GZIPPED)
    await w.drain()
    return True


async def invalid_status_line(r: asyncio.StreamReader, w: asyncio.StreamWriter, _n: int) -> bool:
    w.write(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
    await w.drain()
    await _hold(r)
    return False


async def closes_kept_alive(_r: asyncio.StreamReader, w: asyncio.StreamWriter, number: int) -> bool:
    """Answers the first request of a connection; closes it as the second one arrives."""
    if number > 1:
        return False
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await w.drain()
    return True


@contextlib.asynccontextmanager
async def hostile_receivers(
    misbehaviours: dict[str, Misbehaviour],
) -> AsyncIterator[dict[str, Hostile]]:
    """One started server per misbehaviour, by name; all stop (their connections too) at the end."""
    started: list[tuple[asyncio.Server, Hostile]] = []
    try:
        for name, misbehave in misbehaviours.items():
            hostile = Hostile(name, misbehave)
            server = await asyncio.start_server(hostile.handle, "127.0.0.1", 0)
            hostile.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/{name}"
            started.append((server, hostile))
        yield {hostile.name: hostile for _, hostile in started}
    finally:
        for server, hostile in started:
            server.close()
            for task in list(hostile.tasks):
                task.cancel()
            await asyncio.gather(*hostile.tasks, return_exceptions=True)
            await server.wait_closed()
