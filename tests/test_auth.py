"""Reaching receivers: bearer, basic, OAuth2 client credentials, mutual TLS, explicit proxy."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from structlog.testing import capture_logs

from bridge.config import Settings
from bridge.core.events import Event
from bridge.delivery.send import AttemptResult, Sender

EVENT = Event(
    "evt_auth", "device.online", datetime(2026, 1, 1, tzinfo=UTC), "s", {"device_id": "d"}
)


class Server:
    """A real aiohttp server on 127.0.0.1 recording each request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, handler: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        if server.runner is not None:
            await server.runner.cleanup()


async def _serve(servers: list[Server], handler: Any, tls: ssl.SSLContext | None = None) -> Server:
    server = Server()
    await server.start(handler, tls)
    servers.append(server)
    return server


async def _attempt(subscription: dict[str, Any], *, guarded: bool = False) -> AttemptResult:
    settings = Settings.model_validate(
        {"subscriptions": [subscription], "security": {"allow_private_targets": not guarded}}
    )
    sender = Sender(settings, user_agent="hookbridge/test")
    await sender.start()
    try:
        return await sender.attempt(
            settings.subscriptions[0], EVENT, delivery_id="dlv_a", attempt=1
        )
    finally:
        await sender.close()


def _recording(server_box: list[dict[str, str]], status: int = 200) -> Any:
    async def handle(request: web.Request) -> web.Response:
        server_box.append(dict(request.headers))
        return web.Response(status=status)

    return handle


async def test_bearer_and_basic_reach_the_receiver(servers: list[Server]) -> None:
    seen: list[dict[str, str]] = []
    server = await _serve(servers, _recording(seen))
    url = f"http://127.0.0.1:{server.port}/hook"
    with capture_logs() as logs:
        bearer = await _attempt(
            {"name": "b", "url": url, "auth": {"type": "bearer", "token": "tok-secret-1"}}
        )
        basic = await _attempt(
            {
                "name": "c",
                "url": url,
                "auth": {"type": "basic", "username": "hb", "password": "pw-secret-2"},
            }
        )
    assert bearer.outcome == basic.outcome == "delivered"
    assert seen[0]["Authorization"] == "Bearer tok-secret-1"
    assert seen[1]["Authorization"] == "Basic " + base64.b64encode(b"hb:pw-secret-2").decode()
    assert "secret" not in repr(logs)


async def test_oauth2_token_cached_and_refreshed_once_on_401(servers: list[Server]) -> None:
    fetches: list[dict[str, Any]] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        fetches.append({"auth": request.headers.get("Authorization"), **form})
        return web.json_response({"access_token": f"at-{len(fetches)}", "expires_in": 3600})

    token_server = await _serve(servers, token)
    seen: list[dict[str, str]] = []

    async def receiver(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        # the receiver revoked token at-1: only a fresh one works
        ok = request.headers.get("Authorization") != "Bearer at-1" or len(seen) < 3
        return web.Response(status=200 if ok else 401)

    server = await _serve(servers, receiver)
    subscription = {
        "name": "o",
        "url": f"http://127.0.0.1:{server.port}/hook",
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": f"http://127.0.0.1:{token_server.port}/token",
            "client_id": "hb-client",
            "client_secret": "cs-secret-3",
            "scope": "events:write",
        },
    }
    settings = Settings.model_validate(
        {"subscriptions": [subscription], "security": {"allow_private_targets": True}}
    )
    sender = Sender(settings, user_agent="hookbridge/test")
    await sender.start()
    try:
        sub = settings.subscriptions[0]
        results = [
            await sender.attempt(sub, EVENT, delivery_id=f"dlv_{n}", attempt=1) for n in range(3)
        ]
    finally:
        await sender.close()
    assert [r.outcome for r in results] == ["delivered"] * 3
    # two requests with the cached token, then a 401, one refresh and one retry
    assert [h["Authorization"] for h in seen] == [
        "Bearer at-1",
        "Bearer at-1",
        "Bearer at-1",
        "Bearer at-2",
    ]
    assert len(fetches) == 2
    assert fetches[0]["grant_type"] == "client_credentials"
    assert fetches[0]["scope"] == "events:write"
    assert fetches[0]["auth"] == "Basic " + base64.b64encode(b"hb-client:cs-secret-3").decode()


async def test_oauth2_token_endpoint_failure_is_a_failed_attempt(servers: list[Server]) -> None:
    async def token(_request: web.Request) -> web.Response:
        return web.Response(status=400)

    token_server = await _serve(servers, token)
    result = await _attempt(
        {
            "name": "o",
            "url": "http://127.0.0.1:9/hook",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": f"http://127.0.0.1:{token_server.port}/token",
                "client_id": "c",
                "client_secret": "cs-secret-4",
            },
        }
    )
    assert result.outcome == "failed"
    assert result.error == "oauth2 token request to 127.0.0.1 answered HTTP 400"


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "[::1]", "localhost"])
async def test_the_guard_refuses_a_private_token_url_before_any_credential_leaves(
    servers: list[Server], host: str
) -> None:
    fetches: list[dict[str, str]] = []
    token_server = await _serve(servers, _recording(fetches))
    port = token_server.port if host in {"127.0.0.1", "localhost"} else 80
    result = await _attempt(
        {
            "name": "o",
            # A public address: the webhook URL itself passes the guard.
            "url": "http://93.184.215.14:9/hook",
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": f"http://{host}:{port}/token",
                "client_id": "c",
                "client_secret": "cs-secret-guarded",
            },
        },
        guarded=True,
    )
    assert result.outcome == "failed"
    assert result.error is not None
    assert "allow_private_targets" in result.error, result.error
    assert "cs-secret-guarded" not in result.error
    assert fetches == []


async def test_mutual_tls(servers: list[Server], tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("hookbridge-client")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(tls)
    ca.configure_trust(tls)
    tls.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no handshake
    peers: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peercert") if request.transport else None)
        return web.Response(status=200)

    server = await _serve(servers, handle, tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    base = {"name": "m", "url": f"https://127.0.0.1:{server.port}/hook", "ca_file": str(ca_file)}
    without = await _attempt(base)
    assert without.outcome == "failed"
    with_cert = await _attempt({**base, "client_cert": str(cert_file)})
    assert with_cert.outcome == "delivered", with_cert.error
    assert len(peers) == 1
    assert ("commonName", "hookbridge-client") in [
        entry for rdn in peers[0]["subject"] for entry in rdn
    ] or peers[0]["subjectAltName"]


async def test_explicit_proxy_is_used(servers: list[Server]) -> None:
    seen: list[dict[str, str]] = []
    target = await _serve(servers, _recording(seen))
    proxied: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        # A forward proxy gets the absolute URL in the request line.
        proxied.append(str(request.url))
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                str(request.url),
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read())

    proxy_server = await _serve(servers, proxy)
    target_url = f"http://127.0.0.1:{target.port}/hook"
    result = await _attempt(
        {"name": "p", "url": target_url, "proxy": f"http://127.0.0.1:{proxy_server.port}"}
    )
    assert result.outcome == "delivered", result.error
    assert proxied == [target_url]
    assert seen[0]["webhook-id"] == EVENT.id
