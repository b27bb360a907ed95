"""Webhook signatures: Standard Webhooks ``v1`` signing and verification, GitHub style too.

Pure functions of (secret, id, timestamp, raw body bytes); no clock, no I/O.
``now`` is a parameter of :func:`verify` so callers (and tests) own the time.

Secrets
    A secret written ``whsec_<base64>`` signs with the base64-decoded bytes
    after the prefix, as Standard Webhooks libraries do. A secret without the
    prefix signs with its raw UTF-8 bytes, so an operator can paste any shared
    secret a receiver hands out. ``x-hub-signature-256`` (GitHub style) always
    uses the raw UTF-8 bytes of the whole secret, as GitHub does.

Every problem with a header or a secret is a :class:`~bridge.errors.SignatureError`
whose message names the problem, never the secret; no ``ValueError`` or
``binascii.Error`` escapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from bridge.errors import SignatureError

__all__ = [
    "SECRET_PREFIX",
    "format_secret",
    "hub_signature",
    "secret_key",
    "sign",
    "signature_header",
    "verify",
    "verify_hub_signature",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of a secret, not a secret
_TIMESTAMP = re.compile(r"^[0-9]{1,15}$")  # whole seconds; 15 digits outlives any clock
_HUB_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: decoded ``whsec_`` base64, else the raw UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :].strip()
        # Tolerate missing padding, as the reference libraries do.
        encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("a whsec_ secret must be base64 after its prefix") from None
    else:
        key = _utf8(secret)
    if not key:
        raise SignatureError("a webhook secret may not be empty")
    return key


def _utf8(text: str) -> bytes:
    # surrogatepass: header values decoded by a lenient server may carry lone surrogates.
    return text.encode("utf-8", "surrogatepass")


def _digest(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return hmac.new(key, _utf8(f"{msg_id}.{timestamp}.") + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp." + body>``."""
    digest = _digest(secret_key(secret), msg_id, int(timestamp), body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space separated.

    Several secrets are live during key rotation; a receiver holding either
    the old or the new one verifies the message.
    """
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            if not isinstance(value, str) or not value.strip():
                raise SignatureError(f"header {name} is empty")
            return value
    raise SignatureError(f"header {name} is missing")


def _presented_signatures(header: str) -> list[bytes]:
    """Decoded ``v1`` signatures of a header; other versions and garbage are skipped."""
    found: list[bytes] = []
    for entry in header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300,
) -> None:
    """Check Standard Webhooks headers against the raw body; raise :class:`SignatureError`.

    The timestamp must be whole seconds within ``tolerance`` of ``now`` either
    way (a replayed old message, or a clock far ahead, is refused). Any one of
    ``secrets`` matching any one ``v1`` signature in the header is enough.
    """
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp").strip()
    header = _header(headers, "webhook-signature")
    if not _TIMESTAMP.match(stamp):
        raise SignatureError("header webhook-timestamp is not a whole number of seconds")
    timestamp = int(stamp)
    if timestamp < now - tolerance:
        raise SignatureError("webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise SignatureError("webhook-timestamp is too far in the future")
    presented = _presented_signatures(header)
    if not presented:
        raise SignatureError("header webhook-signature holds no v1 signature")
    if not secrets:
        raise SignatureError("no secret is configured to verify with")
    for secret in secrets:
        expected = _digest(secret_key(secret), msg_id, timestamp, body)
        # Check every candidate without stopping early: timing reveals nothing.
        matched = False
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return
    raise SignatureError("no signature matches")


def hub_signature(secret: str, body: bytes) -> str:
    """``x-hub-signature-256`` value: ``sha256=<hex HMAC-SHA256 of body>`` (GitHub style)."""
    return "sha256=" + hmac.new(_utf8(secret), body, hashlib.sha256).hexdigest()


def verify_hub_signature(secret: str, header: str | None, body: bytes) -> None:
    """Check an ``x-hub-signature-256`` header; raise :class:`SignatureError`."""
    if not header:
        raise SignatureError("header x-hub-signature-256 is missing")
    match = _HUB_SIGNATURE.match(header.strip())
    if match is None:
        raise SignatureError("header x-hub-signature-256 is not sha256=<64 hex digits>")
    expected = hub_signature(secret, body).removeprefix("sha256=")
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise SignatureError("x-hub-signature-256 does not match")


def format_secret(key: bytes) -> str:
    """The ``whsec_<base64>`` form of a key; the caller brings 32 random bytes."""
    if len(key) < 24:
        raise SignatureError("a webhook secret needs at least 24 bytes")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")
