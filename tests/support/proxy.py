"""A minimal HTTP forward proxy for tests, with a fixed upstream map.

It takes absolute-form requests (``POST http://host:port/path``) as an HTTP
proxy does, records the target it was asked for, and forwards the request
to the upstream the map gives for that ``host:port``, as a corporate proxy
with a parent or a hosts override does. Targets outside the map get 502, so
the test's traffic never leaves 127.0.0.1.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.support.receiver import serve_locally

_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "host", "transfer-encoding"}


class ForwardProxy:
    def __init__(self, upstreams: dict[str, str]) -> None:
        self.upstreams = upstreams  # "host:port" of a target -> base URL that serves it
        self.targets: list[str] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Absolute-form: the request line names the target; aiohttp gives its
        # host and port through request.url (the Host header a client sends
        # through a proxy names the same target).
        target = request.url
        self.targets.append(str(target))
        upstream = self.upstreams.get(f"{target.host}:{target.port}")
        if upstream is None or self._session is None:
            return web.Response(status=502, text="no route to that target")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            upstream + target.path_qs,
            data=await request.read(),
            headers=headers,
            allow_redirects=False,
        ) as answer:
            return web.Response(status=answer.status, body=await answer.read())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._runner, self.port = await serve_locally(self._handle)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
