"""The configuration's vocabulary: frozen pydantic models and their pure helpers.

What a configuration *is* (subscriptions, retry, limits, event type
declarations, units, templates) belongs to the core: the normaliser, the
router and the retry schedule speak it. How a configuration is *read* (YAML,
``${ENV}``, files, plugins, advice) is :mod:`bridge.config`, a layer above,
which re-exports these models. Nothing here imports anything of the bridge but
the core and :mod:`bridge.errors`.
"""

from __future__ import annotations

from bridge.core.settings import models
from bridge.core.settings.models import *  # noqa: F403 (the models are this package's surface)

__all__ = list(models.__all__)
