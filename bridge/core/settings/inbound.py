"""Inbound webhooks (``inbound:``): signed HTTP requests that become MQTT messages.

Pure, like :mod:`bridge.core.settings.models`, which re-exports these names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.core.settings.checks import check_webhook_secret
from bridge.core.settings.fields import Duration, Size
from bridge.core.settings.templates import check_filter, check_template
from bridge.errors import TemplateError

__all__ = ["INBOUND_RESERVED_PATHS", "InboundSettings"]

INBOUND_RESERVED_PATHS = ("/api", "/metrics", "/healthz", "/readyz", "/dashboard")
"""Paths of the admin listener that an inbound webhook may not take."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class InboundSettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(pattern=r"^/[A-Za-z0-9_./-]*$")
    secret: SecretStr
    topic: str
    allow_topics: list[str] = Field(min_length=1)
    signature: Literal["standard", "github"] = "standard"
    max_body: Size = 256 * 1024
    max_age: Duration = Field(default=3600.0, gt=0)  # an older command is never published

    _secret = field_validator("secret")(check_webhook_secret)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if any(value == p or value.startswith(p + "/") for p in INBOUND_RESERVED_PATHS):
            raise ValueError(
                f"is served by the admin API ({', '.join(INBOUND_RESERVED_PATHS)}); "
                "choose another, e.g. /inbound/<name>"
            )
        return value

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        try:
            check_template(value, roots=("body",))
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allow_topics")
    @classmethod
    def _check_allow_topics(cls, value: list[str]) -> list[str]:
        for topic_filter in value:
            try:
                check_filter(topic_filter)
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value
