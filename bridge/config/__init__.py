"""The configuration: frozen pydantic models, YAML loading and ``${ENV}`` interpolation.

``load_config(path)`` is the one entry point. Every problem in a file is
reported at once, each with its place (``subscriptions[2].url: ...``), in a
:class:`~bridge.errors.ConfigError`. Secrets are ``SecretStr`` and never appear
in a ``repr``, a summary or an error message.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bridge.config.templates import check_filter, check_template
from bridge.config.units import Rate, format_duration, parse_duration, parse_rate, parse_size
from bridge.errors import ConfigError, TemplateError

__all__ = [
    "ApiSettings",
    "BasicAuth",
    "BearerAuth",
    "CircuitSettings",
    "InboundSettings",
    "LimitsSettings",
    "MqttSettings",
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
    "load_config",
    "parse_config",
    "redact_url",
]

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    # What a user writes: seconds as a number, or text with a unit.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ]
        }
    ),
]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][bB])?\s*$"},
            ]
        }
    ),
]
RateLimit = Annotated[
    Rate,
    BeforeValidator(parse_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*\d*\.?\d*\s*(ms|s|m|h|d)\s*$"}
    ),
]

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
    return f"hookbridge-{socket.gethostname()}"


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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class PresenceSettings(_Model):
    offline_after: Duration = 90.0
    enabled: bool = True
    # Which devices go offline when silent: ``announced``, only those that announce
    # a ``heartbeat_interval`` (the others stay online until they say ``offline``,
    # e.g. by their Last Will); ``all``, also every other one after ``offline_after``.
    timeout_for: Literal["announced", "all"] = "announced"
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


class TypeFrom(_Model):
    from_: str = Field(alias="from")
    map: dict[str, str] | None = None


class Rule(_Model):
    topic: str
    type: str | TypeFrom
    data: dict[str, str] = Field(default_factory=dict)
    id: str | None = None
    occurred_at: str | None = None

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "#+"):
            raise ValueError("a rule topic uses {name} levels, not MQTT wildcards")
        return value


class BearerAuth(_Model):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(_Model):
    type: Literal["basic"]
    username: str
    password: SecretStr


class OAuth2ClientCredentials(_Model):
    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(pattern=r"^https?://[^\s/]+")
    client_id: str
    client_secret: SecretStr
    scope: str | None = None
    # A token is renewed this long before the expiry its endpoint announced.
    refresh_margin: Duration = 30.0


ReceiverAuth = Annotated[
    BearerAuth | BasicAuth | OAuth2ClientCredentials, Field(discriminator="type")
]


class CircuitSettings(_Model):
    """The per-subscription circuit breaker (see :mod:`bridge.circuit`)."""

    failures: int = Field(default=5, ge=1, le=100_000)
    cool_down: Duration = Field(default=30.0, ge=0.01)
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
    reply_topic: str | None = None
    enabled: bool = True
    hub_signature: bool = False
    circuit: CircuitSettings = CircuitSettings()
    auth: ReceiverAuth | None = None
    client_cert: Path | None = None  # mutual TLS: PEM certificate (chain) shown to the receiver
    client_key: Path | None = None  # its private key, when not in client_cert
    proxy: str | None = Field(default=None, pattern=r"^http://[^\s/]+")
    pipe_max_reply: Size = 64 * 1024  # pipe: a longer answer is not published
    filter_plugin: str | None = None  # a predicate from the hookbridge.filters entry points

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(f"not a valid JMESPath expression: {exc}") from None
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(
        cls, value: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        secrets = value if isinstance(value, list) else [value] if value is not None else []
        for secret in secrets:
            if len(secret.get_secret_value()) < 8:
                raise ValueError("a webhook secret must have at least 8 characters")
        return value

    @field_validator("reply_topic")
    @classmethod
    def _check_reply_topic(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_template(value, roots=("id", "type", "timestamp", "source", "data"))
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        from bridge.core.formats import FORMATS
        from bridge.plugin import load_plugins  # plugins may add formats

        load_plugins()
        if value not in FORMATS:
            raise ValueError(f"unknown format; known: {', '.join(sorted(FORMATS))}")
        return value

    @field_validator("filter_plugin")
    @classmethod
    def _check_filter_plugin(cls, value: str | None) -> str | None:
        from bridge.plugin import filter_for

        if value is not None and filter_for(value) is None:
            raise ValueError("no installed plugin provides this filter")
        return value

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Subscription:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

    @model_validator(mode="after")
    def _pipe_needs_reply_topic(self) -> Subscription:
        if self.mode == "pipe" and not self.reply_topic:
            raise ValueError("mode 'pipe' needs a reply_topic")
        if self.reply_topic and self.mode != "pipe":
            raise ValueError("reply_topic is only used with mode 'pipe'")
        return self

    @property
    def secrets(self) -> list[SecretStr]:
        if self.secret is None:
            return []
        return list(self.secret) if isinstance(self.secret, list) else [self.secret]


class InboundSettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(pattern=r"^/[A-Za-z0-9_./-]*$")
    secret: SecretStr
    topic: str
    allow_topics: list[str] = Field(min_length=1)
    signature: Literal["standard", "github"] = "standard"
    max_body: Size = 256 * 1024

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


class SecuritySettings(_Model):
    allow_private_targets: bool = False


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
    subscriptions: list[Subscription] = Field(default_factory=list)
    inbound: list[InboundSettings] = Field(default_factory=list)
    api: ApiSettings = ApiSettings()
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for kind, names in (
            ("subscription", [s.name for s in self.subscriptions]),
            ("inbound", [i.name for i in self.inbound]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{kind} name '{name}' is used twice")
                seen.add(name)
        return self

    def subscription(self, name: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.name == name), None)


_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, place: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(place, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{place}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                problems.append(f"{place or '<root>'}: environment variable {name} is not set")
                return ""
            return default
        return found

    return _ENV_PATTERN.sub(substitute, value)


def redact_url(url: str) -> str:
    """A URL fit to print: any password in it replaced, query dropped."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url.split("?", 1)[0])


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _place(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"str", "list[constrained-str]", "SecretStr", "list[SecretStr]"}:
            # pydantic names union members in the location; users know only their keys
            continue
        else:
            text = _join(text, str(part))
    return text or "<root>"


def _check_not_built(raw: dict[str, Any], problems: list[str]) -> None:
    subscriptions = raw.get("subscriptions") or []
    for i, sub in enumerate(subscriptions if isinstance(subscriptions, list) else []):
        if not isinstance(sub, dict):
            continue
        for key, value in sub.items():
            why = FEATURES_NOT_BUILT.get(f"subscriptions.{key}={value}") or FEATURES_NOT_BUILT.get(
                f"subscriptions.{key}"
            )
            if why:
                problems.append(f"subscriptions[{i}].{key}: {why}")
    for key, value in raw.items():
        why = FEATURES_NOT_BUILT.get(key)
        if why and value:
            problems.append(f"{key}: {why}")


def parse_config(raw: object, *, interpolate: bool = True) -> Settings:
    """Validate an already-parsed YAML document into :class:`Settings`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    problems: list[str] = []
    document: dict[str, Any] = raw
    if interpolate:
        document = _interpolate(document, "", problems)
    _check_not_built(document, problems)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{_place(error['loc'])}: {message}")
    if problems or settings is None:
        count = len(problems)
        raise ConfigError(f"configuration has {count} problem{'s' if count != 1 else ''}", problems)
    return settings


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, interpolate and validate a YAML configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({type(exc).__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    return parse_config(raw)
