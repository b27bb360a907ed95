"""How a delivery proves who sends it: per-subscription ``auth`` of the receiver.

``auth:`` of a subscription is one of

``{type: bearer, token}``
    ``Authorization: Bearer <token>``.
``{type: basic, username, password}``
    ``Authorization: Basic …`` (RFC 7617).
``{type: oauth2_client_credentials, token_url, client_id, client_secret, scope}``
    An access token from ``token_url`` (RFC 6749 §4.4; client id and secret
    sent as HTTP Basic, ``scope`` in the form), cached until ``expires_in``
    minus ``refresh_margin``. When the receiver answers 401, the sender drops
    the token, fetches a new one and retries that attempt once.

Mutual TLS (``client_cert``/``client_key``) and an explicit ``proxy`` are
options of the connection, handled by :mod:`bridge.send`.

Every secret here is a ``SecretStr`` from the configuration (``${ENV}``); it
is put in a header and nowhere else. Errors name the token URL's host and the
HTTP status, never a secret or a token.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from yarl import URL

from bridge.config import BasicAuth, BearerAuth, OAuth2ClientCredentials, Settings, Subscription
from bridge.errors import DeliveryError

__all__ = ["ReceiverAuth", "auth_for", "auth_secret_values", "secret_values"]

_TOKEN_BODY_LIMIT = 64 * 1024
_DEFAULT_EXPIRY = 3600.0  # RFC 6749 leaves expires_in optional; assume an hour


def auth_secret_values(settings: Settings) -> list[str]:
    """Every auth secret of every subscription, so the log filter can mask them."""
    values: list[str] = []
    for subscription in settings.subscriptions:
        auth = subscription.auth
        if isinstance(auth, BearerAuth):
            values.append(auth.token.get_secret_value())
        elif isinstance(auth, BasicAuth):
            values.append(auth.password.get_secret_value())
        elif isinstance(auth, OAuth2ClientCredentials):
            values.append(auth.client_secret.get_secret_value())
    return [v for v in values if v]


def secret_values(settings: Settings) -> list[str]:
    """Every secret a configuration holds, for the log and excerpt scrubber to mask.

    Called at start and again on every reload, so secrets a reload brings in
    are masked from the moment they can be used.
    """
    values = [s.get_secret_value() for sub in settings.subscriptions for s in sub.secrets]
    values += [h.get_secret_value() for sub in settings.subscriptions for h in sub.headers.values()]
    for sub in settings.subscriptions:
        if isinstance(sub.auth, BasicAuth):
            # What goes over the wire, as a receiver would echo it.
            values.append(_basic(sub.auth.username, sub.auth.password.get_secret_value())[6:])
        elif isinstance(sub.auth, OAuth2ClientCredentials):
            secret = sub.auth.client_secret.get_secret_value()
            values.append(_basic(sub.auth.client_id, secret)[6:])
    values += [i.secret.get_secret_value() for i in settings.inbound]
    values += auth_secret_values(settings)
    if settings.mqtt.password is not None:
        values.append(settings.mqtt.password.get_secret_value())
    values += _url_passwords(settings.store.url)
    if settings.api.token is not None:
        values.append(settings.api.token.get_secret_value())
    values += [h.get_secret_value() for h in settings.tracing.headers.values()]
    return values


class ReceiverAuth:
    """The ``Authorization`` header of one subscription; caches an OAuth2 token."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        judge: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._subscription = subscription
        # The target guard judges the token URL before each fetch, as it judges the
        # webhook URL (bridge.delivery.targets.judge_target); None: the guard is off.
        self._judge = judge
        self._config = subscription.auth
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.token_fetches = 0

    @property
    def refreshable(self) -> bool:
        """Whether a 401 may be cured by a fresh token."""
        return isinstance(self._config, OAuth2ClientCredentials)

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """Headers to add to a delivery; fetches an OAuth2 token when none is valid."""
        config = self._config
        if config is None:
            return {}
        if isinstance(config, BearerAuth):
            return {"Authorization": f"Bearer {config.token.get_secret_value()}"}
        if isinstance(config, BasicAuth):
            return {"Authorization": _basic(config.username, config.password.get_secret_value())}
        return {"Authorization": f"Bearer {await self._access_token(session, config)}"}

    def invalidate(self, headers: Mapping[str, str]) -> None:
        """Forget the token those headers carried (a 401 said it is no longer good)."""
        if self._token is not None and headers.get("Authorization") == f"Bearer {self._token}":
            self._token = None

    async def _access_token(
        self, session: aiohttp.ClientSession, config: OAuth2ClientCredentials
    ) -> str:
        async with self._lock:  # many attempts in flight share one fetch
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token
            token, expires_in = await self._fetch(session, config)
            self._token = token
            self._expires_at = time.monotonic() + max(0.0, expires_in - config.refresh_margin)
            return token

    async def _fetch(
        self, session: aiohttp.ClientSession, config: OAuth2ClientCredentials
    ) -> tuple[str, float]:
        self.token_fetches += 1
        host = URL(config.token_url).host
        if self._judge is not None:
            await self._judge(config.token_url)
        form = {"grant_type": "client_credentials"}
        if config.scope:
            form["scope"] = config.scope
        credentials = _basic(config.client_id, config.client_secret.get_secret_value())
        try:
            async with session.post(
                config.token_url,
                data=form,
                headers={"Accept": "application/json", "Authorization": credentials},
                allow_redirects=False,
                proxy=self._subscription.proxy,
            ) as response:
                body = await response.content.read(_TOKEN_BODY_LIMIT)
                status = response.status
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"oauth2 token request to {host} failed ({type(exc).__name__})"
            ) from exc
        if status != 200:
            raise DeliveryError(f"oauth2 token request to {host} answered HTTP {status}")
        return _parse_token(body, host)


def _url_passwords(url: str) -> list[str]:
    """The password a URL carries, as written and decoded (a driver error may quote either)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, unquote(password)})


def _basic(user: str, password: str) -> str:
    """RFC 7617 credentials (UTF-8), as aiohttp's deprecated BasicAuth wrote them."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _parse_token(body: bytes, host: str | None) -> tuple[str, float]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DeliveryError(f"oauth2 token answer from {host} is not JSON") from None
    token = document.get("access_token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise DeliveryError(f"oauth2 token answer from {host} has no access_token")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in token):
        # It would go into a header; a newline there is a request split, never a token.
        raise DeliveryError(
            f"oauth2 token answer from {host} has an access_token with a space or control character"
        )
    expires = document.get("expires_in", _DEFAULT_EXPIRY)
    if isinstance(expires, str) and expires.isdigit():
        expires = int(expires)
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires < 0:
        expires = _DEFAULT_EXPIRY
    return token, float(expires)


def auth_for(subscription: Subscription) -> ReceiverAuth:
    return ReceiverAuth(subscription)
