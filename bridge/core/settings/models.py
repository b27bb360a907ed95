"""The configuration's frozen pydantic models: what a valid configuration is.

Pure: this module reads no files and no environment (loading, YAML and
``${ENV}`` interpolation live in :mod:`bridge.config.load`, a layer above). Secrets are
``SecretStr`` and never appear in a ``repr``, a summary or an error message.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Annotated, Literal

import jmespath
import jmespath.exceptions
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.core.settings.accounts import AccountsSettings
from bridge.core.settings.batch import BatchSettings, batch_problem
from bridge.core.settings.checks import (
    check_clean_secret,
    check_http_url,
    check_webhook_secret,
    control_character_problem,
    duplicate_names,
    jmespath_problem,
)
from bridge.core.settings.event_types import EventTypeDeclaration, TelemetrySettings
from bridge.core.settings.fields import CleanSecret, CleanText, Duration, RateLimit, Size
from bridge.core.settings.inbound import INBOUND_RESERVED_PATHS, InboundSettings
from bridge.core.settings.pipe import check_reply_topic, check_response_topics
from bridge.core.settings.store import StoreSettings

__all__ = [
    "FEATURES_NOT_BUILT",
    "INBOUND_RESERVED_PATHS",
    "AccountsSettings",
    "ApiSettings",
    "BasicAuth",
    "BearerAuth",
    "CircuitSettings",
    "InboundSettings",
    "LimitsSettings",
    "MqttSettings",
    "MqttTls",
    "OAuth2ClientCredentials",
    "PresenceSettings",
    "ReceiverAuth",
    "RetentionSettings",
    "RetrySettings",
    "Rule",
    "SecuritySettings",
    "Settings",
    "StoreSettings",
    "Subscription",
    "TracingSettings",
    "TypeFrom",
    "redact_url",
]


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

FEATURES_NOT_BUILT: dict[str, str] = {}
"""Config values whose feature is not built yet: ``"place=value"`` → why.

A key of a feature that does not exist yet is an error that says so, never
silently ignored. Entries leave this table as features land.
"""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MqttTls(_Model):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def _default_client_id() -> str:
    return f"hookbridge-{platform.node()}"


class MqttSettings(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = Field(default_factory=_default_client_id, min_length=1, max_length=128)
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry: Duration = 7 * 86400.0
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    keepalive: Duration = 30.0
    tls: MqttTls = MqttTls()
    username: str | None = None
    password: SecretStr | None = None
    shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    reconnect_max: Duration = 30.0
    watch_broker_drops: bool = True  # $SYS/broker/publish/messages/dropped: bridge.ingest.drops

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        # YAML reads an unquoted 5 as a number; accept it rather than confuse users.
        return str(value) if isinstance(value, int | float) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^mqtts?://[^/:]+(:\d+)?/?$", value):
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        return value

    @field_validator("username", "password", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def tls_enabled(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        if ":" in rest:
            return int(rest.rsplit(":", 1)[1])
        return 8883 if self.tls_enabled else 1883


class PresenceSettings(_Model):
    offline_after: Duration = 90.0
    enabled: bool = True
    # Which devices go offline when silent: ``announced`` (a ``heartbeat_interval``; the
    # others wait for their ``offline``, e.g. a Last Will), or ``all`` after ``offline_after``.
    timeout_for: Literal["announced", "all"] = "announced"
    announce_first_seen: bool = True  # a device's first event: device.online, first_seen
    # A device announcing ``heartbeat_interval`` goes offline after this many missed beats.
    missed_heartbeats: int = Field(default=3, ge=1, le=100)


class RetrySettings(_Model):
    schedule: list[Duration] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=0,
        max_length=50,
    )
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    disable_after: Duration = 5 * 86400.0
    retry_after_cap: Duration = 3600.0


class LimitsSettings(_Model):
    max_payload: Size = 256 * 1024
    max_topic_length: int = Field(default=1024, ge=1, le=65535)
    max_json_depth: int = Field(default=32, ge=1, le=1000)
    max_fields: int = Field(default=1000, ge=1)
    response_body_kept: Size = 2048


class RetentionSettings(_Model):
    delivered: Duration = 7 * 86400.0
    dead: Duration = 30 * 86400.0
    max_event_age: Duration = 3 * 86400.0
    interval: Duration = 300.0
    audit: Duration = 365 * 86400.0  # the audit trail of API changes is kept this long


class TypeFrom(_Model):
    from_: str = Field(alias="from")
    map: dict[str, str] | None = None


class Rule(_Model):
    topic: str
    type: str | TypeFrom
    data: dict[str, str] = Field(default_factory=dict)
    id: str | None = None
    occurred_at: str | None = None
    # topic.<level>: the topic level naming the event's account (never the payload)
    account: str | None = Field(default=None, pattern=r"^topic\.[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "#+"):
            raise ValueError("a rule topic uses {name} levels, not MQTT wildcards")
        return value

    @model_validator(mode="after")
    def _account_is_a_level(self) -> Rule:
        level = self.account_level
        if level is not None and f"{{{level}}}" not in self.topic.split("/"):
            raise ValueError(f".account: the topic has no level {{{level}}}")
        return self

    @property
    def account_level(self) -> str | None:
        """The named topic level that holds the account, if the rule names one."""
        return None if self.account is None else self.account.removeprefix("topic.")


class BearerAuth(_Model):
    type: Literal["bearer"]
    token: CleanSecret


class BasicAuth(_Model):
    type: Literal["basic"]
    username: CleanText
    password: CleanSecret


class OAuth2ClientCredentials(_Model):
    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(pattern=r"^https?://[^\s/]+")
    client_id: CleanText
    client_secret: CleanSecret
    scope: CleanText | None = None
    # A token is renewed this long before the expiry its endpoint announced.
    refresh_margin: Duration = 30.0

    _url = field_validator("token_url")(check_http_url)


ReceiverAuth = Annotated[
    BearerAuth | BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")
]


class CircuitSettings(_Model):
    """The per-subscription circuit breaker (see :mod:`bridge.circuit`)."""

    failures: int = Field(default=5, ge=1, le=100_000)
    cool_down: Duration = Field(default=10.0, ge=0.01)
    enabled: bool = True


class Subscription(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    url: str
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    filter: str | None = None
    secret: SecretStr | list[SecretStr] | None = None
    # json | xml | form | cloudevents | cloudevents-binary, or a format a plugin adds
    format: str = Field(default="json", pattern=r"^[A-Za-z0-9_.-]+$")
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: Duration = 10.0
    verify_tls: bool = True
    ca_file: Path | None = None
    max_in_flight: int = Field(default=256, ge=1, le=1024)  # the cap of the adaptive limit
    rate_limit: RateLimit | None = None
    ordered: bool = False
    mode: Literal["push", "pipe"] = "push"
    reply_topic: str | None = None  # pipe: where answers go when the device gave no Response Topic
    response_topics: list[str] = Field(default_factory=list)  # pipe: the Response Topics answered
    reply_errors: bool = False  # pipe: a failed attempt publishes {"error": ...} back
    reply_max_age: Duration = Field(default=3600.0, gt=0)  # pipe: a later answer is never published
    enabled: bool = True
    hub_signature: bool = False
    circuit: CircuitSettings = CircuitSettings()
    auth: ReceiverAuth | None = None
    client_cert: Path | None = None  # mutual TLS: PEM certificate (chain) shown to the receiver
    client_key: Path | None = None  # its private key, when not in client_cert
    proxy: str | None = Field(default=None, pattern=r"^http://[^\s/]+")
    pipe_max_reply: Size = 64 * 1024  # pipe: a longer answer is not published
    filter_plugin: str | None = None  # a predicate from the hookbridge.filters entry points
    batch: BatchSettings | None = None  # several events per POST (see bridge.core.settings.batch)

    _url = field_validator("url")(check_http_url)
    _reply_topic = field_validator("reply_topic")(check_reply_topic)
    _response_topics = field_validator("response_topics")(check_response_topics)

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(jmespath_problem(exc)) from None
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(
        cls, value: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        if not isinstance(value, list):
            return None if value is None else check_webhook_secret(value)
        problems: list[str] = []
        for index, secret in enumerate(value):
            try:
                check_webhook_secret(secret)
            except ValueError as exc:
                problems.append(f"[{index}]: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        problems: list[str] = []
        for name, header in value.items():
            if not _HEADER_NAME.match(name):
                problems.append(f".{name!r}: not a valid HTTP header name")
                continue
            problem = control_character_problem(header.get_secret_value())
            if problem is not None:
                problems.append(f".{name}: {problem}")
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Subscription:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

    @model_validator(mode="after")
    def _pipe_fields_need_pipe(self) -> Subscription:
        # mode pipe without reply_topic answers MQTT 5 requests only (their Response
        # Topic, within response_topics); an answer with nowhere to go is an error
        # on the attempt.
        if self.reply_topic and self.mode != "pipe":
            raise ValueError("reply_topic is only used with mode 'pipe'")
        if self.reply_errors and self.mode != "pipe":
            raise ValueError("reply_errors is only used with mode 'pipe'")
        if self.response_topics and self.mode != "pipe":
            raise ValueError("response_topics is only used with mode 'pipe'")
        return self

    @model_validator(mode="after")
    def _batch_can_batch(self) -> Subscription:
        if self.batch is not None:
            problem = batch_problem(mode=self.mode, format_name=self.format)
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def secrets(self) -> list[SecretStr]:
        if self.secret is None:
            return []
        return list(self.secret) if isinstance(self.secret, list) else [self.secret]


class ApiSettings(_Model):
    listen: str | None = "127.0.0.1:8080"
    token: SecretStr | None = None
    inbound_listen: str | None = None

    @field_validator("listen", "inbound_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[\w.:\[\]-]+:\d+$", value):
            raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("token")
    @classmethod
    def _clean_token(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else check_clean_secret(value)


class SecuritySettings(_Model):
    allow_private_targets: bool = False


class TracingSettings(_Model):
    """OpenTelemetry export of the bridge's spans (the ``otlp`` extra)."""

    # OTLP over HTTP (protobuf), the traces URL: http://collector:4318/v1/traces
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    service_name: str = Field(default="hookbridge", min_length=1, max_length=128)
    headers: dict[str, SecretStr] = Field(default_factory=dict)  # e.g. an API key


class Settings(_Model):
    """The whole configuration of one bridge instance."""

    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    profiles: list[str] = Field(default_factory=lambda: ["native"])
    presence: PresenceSettings = PresenceSettings()
    retry: RetrySettings = RetrySettings()
    limits: LimitsSettings = LimitsSettings()
    retention: RetentionSettings = RetentionSettings()
    rules: list[Rule] = Field(default_factory=list)
    event_types: list[EventTypeDeclaration] = Field(default_factory=list)
    telemetry: TelemetrySettings = TelemetrySettings()
    subscriptions: list[Subscription] = Field(default_factory=list)
    inbound: list[InboundSettings] = Field(default_factory=list)
    api: ApiSettings = ApiSettings()
    security: SecuritySettings = SecuritySettings()
    tracing: TracingSettings = TracingSettings()
    accounts: AccountsSettings = AccountsSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        problems = [
            *duplicate_names("subscriptions", list(enumerate(s.name for s in self.subscriptions))),
            *duplicate_names("inbound", list(enumerate(i.name for i in self.inbound))),
            *duplicate_names("event_types", list(enumerate(t.name for t in self.event_types))),
        ]
        if problems:  # each with its place, which the loader reads off the message
            raise ValueError("\n".join(f".{problem}" for problem in problems))
        return self

    def subscription(self, name: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.name == name), None)


def redact_url(url: str) -> str:
    """A URL fit to print: any password in it replaced, query dropped.

    The user part ends at the authority's *last* ``@``: a password may hold ``@``
    itself (``postgresql://hb:p@ss@db/hb``), and none of it may show.
    """
    scheme, sep, rest = url.split("?", 1)[0].partition("//")
    if not sep:
        return url.split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}"
    return f"{scheme}{sep}{authority}{slash}{path}"
