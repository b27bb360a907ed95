"""The admin HTTP server: auth, errors as JSON, health, metrics, the dashboard page.

``create_app(bridge)`` builds the aiohttp application; :class:`AdminServer`
runs it on ``api.listen`` for the life of the bridge. The ``/api/…`` routes
live in :mod:`bridge.api_routes` and the OpenAPI document describing them in
:mod:`bridge.api_openapi`.

Paths under ``/api/`` and ``/metrics`` need ``Authorization: Bearer <api.token>``
(compared in constant time), or an account's token for the routes an account may
use (:mod:`bridge.admin.accounts.principals`; the others answer 403); ``/healthz``,
``/readyz`` and the dashboard pages do not (a page asks for the token and sends it
on its own calls). Routes handed in as ``extra_routes`` (the inbound webhooks) are
outside ``/api/`` and do their own authentication (signatures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.admin.accounts.api import add_account_routes
from bridge.admin.accounts.principals import PRINCIPAL_KEY, account_may, authenticate
from bridge.admin.freshness import add_freshness_routes
from bridge.admin.inbound import add_inbound_routes
from bridge.admin.openapi import openapi_document
from bridge.admin.routes import BRIDGE_KEY, add_api_routes, refresh_gauges
from bridge.errors import (
    BridgeError,
    Conflict,
    NotFound,
    OperatorError,
    StoreError,
    StoreUnavailable,
)
from bridge.observe.logs import get_logger, scrub_secrets

if TYPE_CHECKING:
    from bridge.admin.operations import ServedBridge

__all__ = ["AdminServer", "create_app"]

log = get_logger("hookbridge.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PROTECTED_PREFIXES = ("/api/", "/metrics")
_PROBE_TIMEOUT = 3.0  # seconds; orchestrators give a readiness probe a few seconds


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (OperatorError, 400),
    (StoreUnavailable, 503),
)


def _error_for(exc: Exception, path: str) -> web.Response:
    for kind, status in _STATUS_OF:
        if isinstance(exc, kind):
            if status >= 500:
                log.warning("admin request failed", path=path, error=str(exc))
            return _error(status, str(exc))
    if isinstance(exc, StoreError):
        log.error("admin request failed in the store", path=path, error=str(exc))
        return _error(500, "the store failed; see the bridge log")
    log.error("admin request failed", path=path, exc_info=exc)
    return _error(500, "internal error; see the bridge log")


def _middleware(bridge: ServedBridge) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith(_PROTECTED_PREFIXES):
                token = bridge.settings.api.token
                found = await authenticate(
                    request,
                    operator_token=token.get_secret_value() if token else None,
                    store=bridge.store,
                )
                if found is None:
                    response = _error(
                        401,
                        "missing or wrong bearer token"
                        if token is not None
                        else "the admin API is locked: api.token is not set in the bridge's "
                        "configuration (set it, then restart or reload the bridge)",
                    )
                    response.headers["WWW-Authenticate"] = 'Bearer realm="hookbridge"'
                    return response
                if not found.operator and not account_may(request):
                    return _error(403, "operator token required")
                request[PRINCIPAL_KEY] = found
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
            return _error_for(exc, request.path)

    return guard


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _store_probe(bridge: ServedBridge) -> bool:
    try:
        return await asyncio.wait_for(bridge.store.is_writable(), _PROBE_TIMEOUT)
    except TimeoutError:
        return False  # a lock or a stalled disk: ingest's commits would wait as long


async def _readyz(request: web.Request) -> web.Response:
    """Ready when the broker is connected and events can be committed.

    Two signs count against the store: ingest's last commit failed (it keeps
    trying; ``store_blocked`` clears at its first success), and a probe that
    commits a row through the same tables as ingest fails or stalls. Each
    reason is named, so a 503 says what to fix.
    """
    bridge = request.app[BRIDGE_KEY]
    connected = bridge.ingest.connected
    blocked = bridge.ingest.store_blocked
    writable = await _store_probe(bridge)
    reasons: list[str] = []
    if not connected:
        reasons.append("broker_disconnected: not connected to the MQTT broker")
    if blocked:
        error = scrub_secrets(bridge.ingest.store_error or "")[:300]
        reasons.append(f"store_blocked: ingest commits fail; messages stay unacked ({error})")
    if not writable:
        reasons.append("store_not_writable: a probe commit through the events table failed")
    body = {
        "ready": not reasons,
        "broker_connected": connected,
        "store_writable": writable and not blocked,
        "store_blocked": blocked,
        "reasons": reasons,
    }
    return web.json_response(body, status=503 if reasons else 200)


async def _metrics(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    await refresh_gauges(bridge)
    return web.Response(
        body=bridge.metrics.render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def _dashboard(_request: web.Request) -> web.Response:
    return _page("dashboard.html")


async def _settings_page(_request: web.Request) -> web.Response:
    """The webhook settings page: subscriptions made, tested and managed in a form."""
    return _page("settings.html")


async def _page_script(_request: web.Request) -> web.Response:
    """What both pages share (page.js), loaded by each before its own script."""
    return _page("page.js", content_type="text/javascript")


def _page(name: str, *, content_type: str = "text/html") -> web.Response:
    page = files("bridge.admin").joinpath(name).read_bytes()
    return web.Response(
        body=page,
        content_type=content_type,
        charset="utf-8",
        # The page holds the token in sessionStorage: keep other sites from framing it.
        headers={"X-Frame-Options": "DENY", "Cache-Control": "no-store"},
    )


def create_app(
    bridge: ServedBridge, *, extra_routes: Sequence[web.AbstractRouteDef] = ()
) -> web.Application:
    """The admin application; ``extra_routes`` is where inbound webhook routes plug in."""
    app = web.Application(middlewares=[_middleware(bridge)], client_max_size=1024 * 1024)
    app[BRIDGE_KEY] = bridge
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _dashboard)
    app.router.add_get("/dashboard", _dashboard)
    app.router.add_get("/dashboard/settings", _settings_page)
    app.router.add_get("/dashboard/page.js", _page_script)
    app.router.add_get("/api/openapi.json", _openapi)
    add_account_routes(app)
    add_api_routes(app)
    add_inbound_routes(app)
    add_freshness_routes(app)
    app.router.add_routes(extra_routes)
    return app


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class AdminServer:
    """The admin API on ``api.listen`` for the life of the bridge."""

    def __init__(
        self, bridge: ServedBridge, *, extra_routes: Sequence[web.AbstractRouteDef] = ()
    ) -> None:
        self._bridge = bridge
        self._extra_routes = extra_routes
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        listen = self._bridge.settings.api.listen
        if listen is None:
            return
        if self._bridge.settings.api.token is None:
            log.warning("api.token is not set: every /api call and /metrics answer 401")
        host, port = _split_listen(listen)
        runner = web.AppRunner(
            create_app(self._bridge, extra_routes=self._extra_routes),
            access_log=None,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise BridgeError(
                f"the admin API cannot listen on {listen} (api.listen): {exc.strerror}; set "
                "api.listen to a free address, or null to turn the admin API off"
            ) from exc
        self._runner = runner
        server = site._server  # the bound port, when asked for port 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("admin API listening", listen=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
