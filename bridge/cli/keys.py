"""Fresh webhook secrets for the command line and the demo."""

from __future__ import annotations

import secrets

from bridge.core.signing import format_secret

__all__ = ["generate_secret"]


def generate_secret() -> str:
    """A fresh ``whsec_`` secret of 32 random bytes."""
    return format_secret(secrets.token_bytes(32))
