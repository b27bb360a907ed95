"""Helpers for tests of the admin API: a config with the API on a free port, a client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import bridge_config
from tests.support.mosquitto import Mosquitto, free_port

TOKEN = "adm_0123456789abcdefghij"


def admin_config(
    broker: Mosquitto, tmp_path: Path, subscriptions: list[dict[str, Any]], **overrides: Any
) -> dict[str, Any]:
    """A test bridge config with the admin API on 127.0.0.1:<free port> and a token."""
    api = {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN, **overrides.pop("api", {})}
    return bridge_config(broker, tmp_path, subscriptions, api=api, **overrides)


def api_url(config: dict[str, Any]) -> str:
    return f"http://{config['api']['listen']}"


@contextlib.asynccontextmanager
async def admin_client(config: dict[str, Any]) -> AsyncIterator[Admin]:
    """A client of the admin API ``config`` describes, closed when the block ends."""
    admin = Admin(api_url(config))
    try:
        yield admin
    finally:
        await admin.close()


class Admin:
    """An aiohttp client of the admin API that keeps status and JSON of each answer."""

    def __init__(self, base: str, token: str | None = TOKEN) -> None:
        self.base = base
        self.token = token
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {}
        use = token if token is not None else self.token
        if use:
            headers["Authorization"] = f"Bearer {use}"
        async with self.session.request(
            method, self.base + path, json=json, headers=headers, params=params
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, **kw)
