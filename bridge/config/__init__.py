"""The configuration: its frozen pydantic models (:mod:`bridge.core.settings`, re-exported) and
their loading from YAML with ``${ENV}`` interpolation (:mod:`bridge.config.load`).

``load_config(path)`` is the one entry point. Every problem in a file is
reported at once, each with its place (``subscriptions[2].url: ...``), in a
:class:`~bridge.errors.ConfigError`. Secrets are ``SecretStr`` and never appear
in a ``repr``, a summary or an error message.
"""

from __future__ import annotations

from bridge.config.load import load_api_settings, load_config, parse_config
from bridge.core.settings import models
from bridge.core.settings.models import *  # noqa: F403 (the models are this package's surface)

__all__ = ["load_api_settings", "load_config", "parse_config"]
__all__ += models.__all__
