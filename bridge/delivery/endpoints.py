"""Per-subscription endpoints of the sender: connection pools, TLS and receiver auth.

Each version of each subscription gets its own :class:`Endpoint`, so a slow or
dead receiver can exhaust only its own pool, never another subscription's.
Webhook POSTs go through the lean client's :class:`bridge.delivery.pool.Pool`;
a subscription with a ``proxy`` posts through aiohttp instead. The aiohttp
session exists for every endpoint: OAuth2 token requests use it (it opens
connections only when used).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial

import aiohttp
from aiohttp.abc import AbstractResolver

from bridge.config import Subscription
from bridge.delivery.auth import ReceiverAuth
from bridge.delivery.pool import Pool
from bridge.delivery.targets import GuardedResolver, judge_target
from bridge.errors import DeliveryError

__all__ = ["Endpoint", "ssl_for"]


class Endpoint:
    """The pools (lean client and aiohttp session) of one version of one subscription."""

    __slots__ = ("auth", "in_flight", "pool", "resolver", "session", "subscription")

    def __init__(
        self,
        subscription: Subscription,
        tls: ssl.SSLContext | bool,
        *,
        guarded: bool,
        on_resend: Callable[[], None] | None = None,
    ) -> None:
        self.subscription = subscription
        # With a proxy, the connector resolves only the proxy: the configured
        # proxy is trusted as such; the target is judged before each attempt.
        self.resolver: AbstractResolver = (
            GuardedResolver()
            if guarded and subscription.proxy is None
            else aiohttp.DefaultResolver()
        )
        connector = aiohttp.TCPConnector(
            limit=subscription.max_in_flight, limit_per_host=0, ssl=tls, resolver=self.resolver
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=subscription.timeout),
            trust_env=False,  # an environment proxy would bypass the target guard
            cookie_jar=aiohttp.DummyCookieJar(),  # deliveries are independent requests
        )
        self.pool: Pool | None = None
        if subscription.proxy is None:
            self.pool = Pool(
                subscription.url,
                tls=tls,
                resolver=self.resolver,
                guarded=guarded,
                limit=subscription.max_in_flight,
                on_resend=on_resend,
            )
        proxied = subscription.proxy is not None
        self.auth = ReceiverAuth(
            subscription, judge=partial(judge_target, proxied=proxied) if guarded else None
        )
        self.in_flight = 0

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.session.close()
        await self.resolver.close()


def ssl_for(subscription: Subscription) -> ssl.SSLContext | bool:
    """The TLS setting of a subscription: a context, or True/False for default/no verification."""
    if subscription.client_cert is None:
        if not subscription.verify_tls:
            return False
        if subscription.ca_file is None:
            return True
    try:
        context = ssl.create_default_context(
            cafile=str(subscription.ca_file) if subscription.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(
            f"ca_file of subscription {subscription.name} cannot be loaded ({type(exc).__name__})"
        ) from exc
    if not subscription.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if subscription.client_cert is not None:
        key = subscription.client_key
        try:
            context.load_cert_chain(str(subscription.client_cert), str(key) if key else None)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"client_cert of subscription {subscription.name} cannot be loaded"
                f" ({type(exc).__name__})"
            ) from exc
    return context
