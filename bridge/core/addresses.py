"""Which IP addresses count as not public: the judgement of the SSRF guard, pure.

Shared by the guard at send time (:mod:`bridge.delivery.targets`) and the
configuration check, which warns about private targets before any is sent.
"""

from __future__ import annotations

import ipaddress

__all__ = ["non_public_label"]

_CATEGORIES = (
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_unspecified", "an unspecified"),
    ("is_private", "a private"),
    ("is_reserved", "a reserved"),
)


def non_public_label(address: str) -> str | None:
    """``"a loopback"``, ``"a private"``… for a non-public IP address; None when public.

    Raises ``ValueError`` when ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    label = next((text for attr, text in _CATEGORIES if getattr(ip, attr)), None)
    if label is None and not ip.is_global:
        label = "a non-public"
    return label
