"""A real aiohttp webhook receiver on 127.0.0.1 that records what it gets.

Its answers are programmable per request (status, delay, body, headers) so
tests can script outages, slow endpoints, 410, 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_locally(handle: Handler, port: int = 0) -> tuple[web.AppRunner, int]:
    """An aiohttp server on 127.0.0.1:``port`` (0: a free one) passing every request to
    ``handle``; its runner (to clean up) and the port it listens on."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server  # the bound port when asked for port 0
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    path: str
    peer: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    delay: float = 0.0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Script = Callable[[Received, int], Answer]


class Receiver:
    """Records every request; answers what ``script(request, n)`` says (default 200)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda _r, _n: Answer())
        self.requests: list[Received] = []
        self.peers: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests if r.body]

    def unique_ids(self) -> set[str]:
        return {r.headers.get("webhook-id", "") for r in self.requests}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        received = Received(
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            at=time.time(),
            path=request.path,
            peer=str(peer),
        )
        n = len(self.requests)
        self.requests.append(received)
        self.peers.add(received.peer)
        answer = self.script(received, n)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    async def start(self, port: int = 0) -> None:
        self._runner, self.port = await serve_locally(self._handle, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def receiving(script: Script | None = None) -> AsyncIterator[Receiver]:
    """A started receiver answering what ``script`` says, stopped when the block ends."""
    receiver = Receiver(script)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
