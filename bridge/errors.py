"""The one exception tree of HookBridge.

Foreign errors (paho, aiohttp, sqlite3, asyncpg, pydantic, yaml) are translated
into these at the boundary where they enter, with ``raise ... from exc``::

    BridgeError
    ├── ConfigError            the configuration file is missing, unreadable or invalid
    ├── SignatureError         a webhook signature header is malformed or does not verify
    ├── StoreError             the durable store cannot be read or written
    │   └── StoreUnavailable   the store refuses writes right now (read-only, disk full)
    ├── DeliveryError          one HTTP attempt failed (timeout, connection, TLS, refused target)
    │   ├── TargetRefused      the SSRF guard refused the address a URL resolves to
    │   └── HttpFailure        the lean client's reason (a refused header, an answer too large)
    ├── BrokerError            the MQTT broker cannot be reached or refused us
    ├── TemplateError          a topic template could not be rendered safely
    ├── ApiError               an admin API call failed (CLI side)
    ├── RequestRefused         an inbound webhook request is refused, with its HTTP status
    └── OperatorError          an admin action cannot be done as asked (bad request)
        ├── NotFound           it names a subscription, delivery or event that does not exist
        └── Conflict           it does not fit the current state (retrying a pending delivery)

No message of any of these may contain a secret: callers pass names and
reasons, never values of ``SecretStr`` fields.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "BridgeError",
    "BrokerError",
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "HttpFailure",
    "NotFound",
    "OperatorError",
    "RequestRefused",
    "SignatureError",
    "StoreError",
    "StoreUnavailable",
    "TargetRefused",
    "TemplateError",
]


class BridgeError(Exception):
    """Base of every error HookBridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; ``problems`` lists each one with its place."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class SignatureError(BridgeError):
    """A signature header is malformed, stale, or does not match the body."""


class StoreError(BridgeError):
    """The store failed to read or write."""


class StoreUnavailable(StoreError):
    """The store cannot take writes now (read-only file, disk full); retry later."""


class DeliveryError(BridgeError):
    """One delivery attempt failed before an HTTP status was received."""


class TargetRefused(DeliveryError):
    """The SSRF guard refused the address a webhook URL resolves to."""


class HttpFailure(DeliveryError):
    """An attempt that failed in the lean HTTP client; the text is the reason an operator reads."""


class RequestRefused(BridgeError):
    """An inbound webhook request refused with ``status``; ``reason`` goes to the sender."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BrokerError(BridgeError):
    """The MQTT broker cannot be reached or refused the connection."""


class TemplateError(BridgeError):
    """A topic template could not be rendered into a safe topic."""


class ApiError(BridgeError):
    """A call to the running bridge's admin API failed."""


class OperatorError(BridgeError):
    """An admin action (API, CLI) cannot be done as asked; the message says why."""


class NotFound(OperatorError):
    """The action names a subscription, delivery or event that does not exist."""


class Conflict(OperatorError):
    """The action does not fit the current state of what it names."""
