"""Which event loop ``hookbridge run`` drives the bridge with.

uvloop (libuv) runs the same asyncio code with a fraction of the loop's own
CPU per callback, socket read and timer: on a CPU-bound bridge that is
throughput (see docs/performance.md for the measured difference). It is used
when installed, unless ``--loop asyncio`` (or ``HOOKBRIDGE_LOOP=asyncio``)
asks for the standard loop; ``--loop uvloop`` insists on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from bridge.errors import ConfigError

__all__ = ["LoopChoice", "loop_factory"]

LoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """The factory of the chosen event loop, and its name for the log."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"--loop: must be auto, uvloop or asyncio, not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"
