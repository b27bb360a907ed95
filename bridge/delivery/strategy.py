"""Sending strategies: what one attempt of a lane carries.

The dispatcher asks a lane's strategy to start what the lane may start now.
:class:`SingleSending` sends each delivery in a POST of its own;
:class:`bridge.delivery.batching.BatchSending` gathers several into one. Both
start attempts through :class:`bridge.delivery.attempts.Attempts`, so the
limits, the circuit and the rate limit apply to each alike.
"""

from __future__ import annotations

from typing import Protocol

from bridge.delivery.attempts import Attempts
from bridge.delivery.lane import Lane

__all__ = ["Sending", "SingleSending"]


class Sending(Protocol):
    """How a lane's waiting deliveries become attempts."""

    async def start(self, lane: Lane) -> None:
        """Start every attempt the lane may start now."""


class SingleSending:
    """One delivery per attempt."""

    def __init__(self, attempts: Attempts) -> None:
        self._attempts = attempts

    async def start(self, lane: Lane) -> None:
        attempts = self._attempts
        while attempts.may_start(lane):
            was_open = await attempts.admit(lane)
            if was_open is None:
                break  # open: deliveries wait in the book and the store, none dropped
            if not lane.book.waiting:  # given back while the rate limit held us
                attempts.unused(lane, was_open)
                break
            delivery = lane.book.start_next()
            attempts.launch(lane, delivery.id, attempts.single(lane, delivery), probe=was_open)
