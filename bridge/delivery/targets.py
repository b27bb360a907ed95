"""The SSRF guard: which addresses a webhook may be sent to.

Unless ``security.allow_private_targets`` is set, a delivery may not reach a
loopback, private, link-local, multicast, reserved or otherwise non-public
address. The check is on the address actually connected to: a resolver that
filters what a name resolves to (so a public name pointing at 127.0.0.1 or a
cloud metadata address is refused), plus a check of IP literals in the URL,
which aiohttp connects to without asking the resolver. A refusal happens
before any connection is opened.

Through an explicit ``proxy`` the bridge connects only to the proxy, and the
proxy resolves the target. The proxy named in the configuration is trusted
as a proxy (a private proxy by host name works with the guard on); the
target behind it is judged by :func:`judge_target`, which resolves
it here and refuses it when *any* address it resolves to is refused (the
proxy may pick any of them), or when it cannot be resolved (what cannot be
judged is not sent).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bridge.core.addresses import non_public_label
from bridge.errors import DeliveryError, TargetRefused

__all__ = [
    "GuardedResolver",
    "check_target",
    "judge_target",
    "target_refusal",
]


def target_refusal(address: str) -> str | None:
    """Why the SSRF guard refuses an IP address, or ``None`` for a public address."""
    try:
        label = non_public_label(address)
    except ValueError:
        return f"target {address} is not an IP address"
    if label is None:
        return None
    return (
        f"target {address} is {label} address; set security.allow_private_targets: true to allow it"
    )


def check_target(address: str) -> None:
    """Raise :class:`TargetRefused` for an address the guard refuses."""
    reason = target_refusal(address)
    if reason is not None:
        raise TargetRefused(reason)


class GuardedResolver(AbstractResolver):
    """Resolves names, then keeps only public addresses.

    Checking the resolved address (not the name) is what stops a public name
    that points at 127.0.0.1 or a cloud metadata address.
    """

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        resolved = await self._inner.resolve(host, port, family)
        allowed = [entry for entry in resolved if target_refusal(entry["host"]) is None]
        if not allowed and resolved:
            check_target(resolved[0]["host"])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


async def judge_target(url: str, *, proxied: bool) -> None:
    """The guard's one judgement of an address a subscription connects to: its webhook
    URL, its OAuth2 ``token_url``, each directly or through its ``proxy``.

    An IP literal is judged here (a connector dials it without asking the
    resolver). A name behind a proxy is resolved here and refused when *any*
    address it resolves to is refused (the proxy may pick any of them), or when
    it cannot be resolved (what cannot be judged is not sent). A name without a
    proxy is judged where it is connected to: by :class:`GuardedResolver`, on
    the very addresses used, so there is no second lookup that could rebind it.
    The proxy itself is trusted: the configuration names it.
    """
    target = URL(url)
    host = target.host
    if host is None:
        raise DeliveryError("the URL has no host")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        check_target(host)
        return
    if not proxied:
        return  # judged by the resolver at connection time
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, target.port, type=socket.SOCK_STREAM)
    except OSError:
        raise TargetRefused(
            f"target {host} behind the proxy cannot be resolved here, so it cannot be judged"
        ) from None
    for info in infos:
        reason = target_refusal(str(info[4][0]))
        if reason is not None:
            raise TargetRefused(f"{host} behind the proxy: {reason}")
