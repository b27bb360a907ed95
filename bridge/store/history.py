"""A delivery's attempt history: attempt rows, and the last attempt its row keeps.

Most deliveries succeed at their first attempt. Writing that attempt as a row
of its own, beside the update of its delivery, costs two more B-tree pages
per event in the commit that records it; so the delivery's row keeps its last
attempt (start, latency, status code, error, excerpt) and a first success
gets no row. Every other attempt (a failure, a retry's success, a success
that was fenced out or that follows a fenced-out try) gets its row as before,
and the history reads both: the rows, and the row's last attempt where no
row stands for it.

Crash argument: the row's summary and any attempt row are written in the
transaction that applies the outcome, so a kill -9 leaves both or neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.core.outcomes import AttemptOutcome, DeliveryStatus
from bridge.store.rows import AttemptRecord

__all__ = ["first_success", "with_summarised"]


def first_success(record: AttemptRecord, outcome: AttemptOutcome) -> bool:
    """An attempt its delivery's row can stand for alone: the first, delivered, with
    nothing to note. Its history needs no attempt row when the outcome is applied and
    no fenced-out try came before it (the row keeps the last attempt's start,
    latency, status and excerpt); any other attempt gets a row of its own."""
    return (
        record.attempt == 1 and outcome.status is DeliveryStatus.DELIVERED and record.error is None
    )


def with_summarised(stored: list[AttemptRecord], last: Sequence[Any] | None) -> list[AttemptRecord]:
    """A delivery's attempt history: its attempt rows, and the last attempt as the
    delivery's row keeps it when no row stands for it (see :func:`first_success`).

    ``last`` is the row of ``statements.LAST_ATTEMPT``; its start is NULL for a
    delivery recorded before the row kept it, or never tried.
    """
    if last is None or last[2] is None:
        return stored
    delivery_id, number, started_at, latency_ms, status_code, error, excerpt = last
    if any(r.attempt == number and r.started_at == started_at for r in stored):
        return stored
    summary = AttemptRecord(
        delivery_id, number, started_at, latency_ms, status_code, error, excerpt
    )
    return [*stored, summary]
