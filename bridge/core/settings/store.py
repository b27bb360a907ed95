"""The store's settings (``store:``): where the durable outbox lives and how it is kept.

Pure, like :mod:`bridge.core.settings.models`, which re-exports :class:`StoreSettings`.
The encryption keys are checked as Fernet keys here, never quoted in a message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.core.settings.accounts import check_fernet_key
from bridge.core.settings.fields import Duration, Size

__all__ = ["StoreSettings"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class StoreSettings(_Model):
    url: str = "sqlite:///hookbridge.db"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    lease: Duration = 300.0
    commit_interval: Duration = 0.005
    # Leases follow their holder: each instance renews a heartbeat row this often,
    # and the others take over the work of one whose row is older than takeover_after.
    heartbeat: Duration = Field(default=5.0, gt=0)
    takeover_after: Duration = Field(default=30.0, gt=0)
    # Where an event goes that the store refuses even as a quarantined rejection
    # (JSON lines); default: hookbridge-dead-letter.jsonl beside a SQLite file,
    # in the working directory for PostgreSQL.
    dead_letter_file: str | None = None
    # SQLite: who checkpoints the write-ahead log. ``auto``: a thread of the bridge's
    # own that never waits for readers; ``external``: Litestream or the like.
    checkpoints: Literal["auto", "external"] = "auto"
    # SQLite: past this size of the write-ahead log, alert (bridge.store_log_large).
    log_alert: Size = Field(default=512 * 1024 * 1024, ge=1)
    # The Fernet key that seals the secrets of subscriptions made through the API
    # (usually ${HOOKBRIDGE_ENCRYPTION_KEY}); empty: none. Older keys still open what
    # they sealed (the bridge seals it again with the current key when it starts).
    encryption_key: SecretStr | None = None
    encryption_keys_old: list[SecretStr] = Field(default_factory=list, max_length=20)

    @field_validator("encryption_key", mode="before")
    @classmethod
    def _no_key(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("encryption_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else check_fernet_key(value)

    @field_validator("encryption_keys_old", mode="before")
    @classmethod
    def _no_old_keys(cls, value: object) -> object:
        return (
            [v for v in value if not isinstance(v, str) or v.strip()]
            if isinstance(value, list)
            else value
        )

    @field_validator("encryption_keys_old")
    @classmethod
    def _check_old_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        problems: list[str] = []
        checked: list[SecretStr] = []
        for index, key in enumerate(value):
            try:
                checked.append(check_fernet_key(key))
            except ValueError as exc:
                problems.append(f"[{index}]: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return checked

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value
