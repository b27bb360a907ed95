"""Fresh secrets and keys for the command line and the demo: ``hookbridge keys …``."""

from __future__ import annotations

import secrets

import typer
from cryptography.fernet import Fernet

from bridge.core.signing import format_secret

__all__ = ["generate_secret", "keys_app"]

keys_app = typer.Typer(help="New secrets and keys.", no_args_is_help=True)


def generate_secret() -> str:
    """A fresh ``whsec_`` secret of 32 random bytes."""
    return format_secret(secrets.token_bytes(32))


@keys_app.command("encryption")
def encryption() -> None:
    """Print a new key for store.encryption_key (and nothing else)."""
    typer.echo(Fernet.generate_key().decode("ascii"))
