"""Keyset pages of the store's lists (deliveries, devices, the outbox).

A list reads one row more than the page asks for, to see whether another page
follows; the next page's cursor is then made from the page's last row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["page_and_cursor"]

Row = TypeVar("Row")


def page_and_cursor(
    rows: list[Row], limit: int, cursor_after: Callable[[Row], str]
) -> tuple[list[Row], str | None]:
    """One page out of up to ``limit + 1`` rows, and the cursor of the next page if any."""
    if len(rows) > limit:
        page = rows[:limit]
        return page, cursor_after(page[-1])
    return rows, None
