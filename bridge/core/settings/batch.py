"""A subscription's ``batch:`` settings: several events in one signed POST.

Pure, like :mod:`bridge.core.settings.models`. A batch is a JSON body
``{"type": "batch", "id": "<batch id>", "events": [<envelope>, ...]}``, so only
formats whose envelope is a JSON document can be batched, and pipe mode (one
answer routed back to one device) cannot be.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bridge.core.settings.fields import Duration, Size

__all__ = ["BATCH_FORMATS", "BatchSettings", "batch_problem"]

BATCH_FORMATS = ("json", "cloudevents")
"""Formats whose envelope is one JSON document (cloudevents: structured mode)."""


class BatchSettings(BaseModel):
    """Up to ``max_events`` envelopes per POST, waiting at most ``max_wait`` for a
    partial batch to fill, the body at most ``max_bytes`` (an event alone larger
    than that is sent alone)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    max_events: int = Field(default=100, ge=1, le=1000)
    max_wait: Duration = Field(default=1.0, ge=0, le=3600)
    max_bytes: Size = Field(default=1024 * 1024, ge=1024)


def batch_problem(*, mode: str, format_name: str) -> str | None:
    """Why a subscription with ``batch:`` cannot batch, or None when it can."""
    if mode == "pipe":
        return "batch cannot be used with mode 'pipe' (one answer goes back to one device)"
    if format_name not in BATCH_FORMATS:
        return (
            f"batch cannot be used with format '{format_name}'"
            f" (a batch needs format {' or '.join(BATCH_FORMATS)})"
        )
    return None
