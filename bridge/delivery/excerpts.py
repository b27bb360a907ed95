"""Kept response excerpts with every secret masked.

A receiver may echo what it was sent (debugging endpoints do). The excerpt
of its answer is kept in the store, listed by the API and shown by the CLI,
so every credential the request carried is masked before the excerpt is
cut: the registered secrets of the configuration, and the values that exist
only per request (Basic credentials, an OAuth2 access token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.config import Subscription
from bridge.observe.logs import scrub_secrets

__all__ = ["MASK", "SCRUB_MARGIN", "masked_excerpt", "sent_secrets"]

MASK = "**********"
SCRUB_MARGIN = 4096
"""Read this much beyond the kept excerpt, so a secret echoed across the cut is masked whole."""


def sent_secrets(subscription: Subscription, headers: Mapping[str, str]) -> list[str]:
    """The secret values this request carried: its own header values and credentials.

    An OAuth2 access token or Basic credentials exist only per request, so the
    registered secrets alone cannot mask a receiver echoing them.
    """
    values = [headers[name] for name in subscription.headers if name in headers]
    authorization = headers.get("Authorization")
    if authorization:
        values += [authorization, authorization.partition(" ")[2]]
    # Longest first: a whole header value is masked before a part of it.
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def masked_excerpt(content: bytes, kept: int, secrets: Sequence[str]) -> str:
    """The kept start of a body with every secret masked (before the cut, so none is halved)."""
    text = content.decode("utf-8", errors="replace")
    for secret in secrets:
        text = text.replace(secret, MASK)
    return scrub_secrets(text).encode()[:kept].decode("utf-8", errors="replace")
