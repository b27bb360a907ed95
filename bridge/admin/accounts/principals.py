"""Who a request comes from: the operator, or one account through one of its tokens.

The admin token of the configuration (``api.token``) is the operator's: it sees
and does everything. An account token (``hbt_…``, issued by the operator, shown
once, kept as its SHA-256) acts for its account only: the routes in
:data:`ACCOUNT_ROUTES`, each filtered to that account, where another account's
object answers 404 as if it did not exist. Every other route answers 403
``operator token required``: a route added later is closed to accounts until it
is listed here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from bridge.store.accounts import AccountsStore

__all__ = [
    "ACCOUNT_ROUTES",
    "OPERATOR",
    "PRINCIPAL_KEY",
    "TOKEN_PREFIX",
    "Principal",
    "account_may",
    "authenticate",
    "new_token",
    "principal",
    "scope",
    "token_digest",
]

TOKEN_PREFIX = "hbt_"  # noqa: S105 - the marker of a token, not a token
_MAX_TOKEN = 200  # an account token is 47 characters; anything longer is not one


@dataclass(frozen=True, slots=True)
class Principal:
    """The operator (``account`` None) or an account acting through ``token_id``."""

    account: str | None = None
    token_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.account is None

    @property
    def actor(self) -> str:
        """How the audit trail names the kind of actor."""
        return "operator" if self.account is None else "account"


OPERATOR = Principal()
PRINCIPAL_KEY = web.RequestKey("principal", Principal)

# (method, route path): what an account's token may call. Each handler filters what it
# reads and does to the token's account.
ACCOUNT_ROUTES = frozenset(
    {
        ("GET", "/api/openapi.json"),
        ("GET", "/api/whoami"),
        ("GET", "/api/event-types"),
        ("GET", "/api/subscriptions"),
        ("POST", "/api/subscriptions"),
        ("POST", "/api/subscriptions/test"),
        ("GET", "/api/subscriptions/{name}"),
        ("PATCH", "/api/subscriptions/{name}"),
        ("DELETE", "/api/subscriptions/{name}"),
        ("POST", "/api/subscriptions/{name}/rotate-secret"),
        ("POST", "/api/subscriptions/{name}/disable"),
        ("POST", "/api/subscriptions/{name}/enable"),
        ("POST", "/api/subscriptions/{name}/flush"),
        ("POST", "/api/subscriptions/{name}/test"),
        ("GET", "/api/events/{event_id}"),
        ("GET", "/api/deliveries"),
        ("GET", "/api/deliveries/{delivery_id}"),
        ("POST", "/api/deliveries/{delivery_id}/retry"),
        ("POST", "/api/replay"),
        ("GET", "/api/devices"),
        ("GET", "/api/devices/{device_id}"),
        ("DELETE", "/api/devices/{device_id}"),
        ("GET", "/api/audit"),
    }
)


def token_digest(token: str) -> str:
    """What the store keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh account token: (token id, the token, its digest)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return "tok_" + secrets.token_hex(8), token, token_digest(token)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def authenticate(
    request: web.Request, *, operator_token: str | None, store: AccountsStore
) -> Principal | None:
    """The principal of the request's bearer token, or None for no or a wrong token."""
    given = _bearer(request)
    if given is None:
        return None
    if operator_token is not None and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), operator_token.encode()
    ):
        return OPERATOR
    if not given.startswith(TOKEN_PREFIX) or len(given) > _MAX_TOKEN:
        return None
    found = await store.token_owner(token_digest(given))
    return None if found is None else Principal(found.account, found.id)


def account_may(request: web.Request) -> bool:
    """Whether an account's token may call this route; unknown paths go on to their 404."""
    match = request.match_info
    if match.http_exception is not None:
        return True
    resource = match.route.resource
    path = resource.canonical if resource is not None else ""
    method = "GET" if request.method == "HEAD" else request.method
    return (method, path) in ACCOUNT_ROUTES


def principal(request: web.Request) -> Principal:
    """Who is asking (set by the admin server's guard for every /api path)."""
    return request[PRINCIPAL_KEY]


def scope(request: web.Request) -> str | None:
    """The account the request is confined to; None for the operator (everything)."""
    return request[PRINCIPAL_KEY].account
