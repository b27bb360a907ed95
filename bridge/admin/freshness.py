"""``GET /api/freshness``: per subscription, p50 and p99 of
``hookbridge_delivery_freshness_seconds``, recent and since start.

The histogram is cumulative since the bridge started. "Recent" is the
difference between now and a snapshot taken about :data:`WINDOW` seconds ago
(snapshots are taken as the endpoint is asked, at most one per
:data:`SNAPSHOT_EVERY`; before the first window has passed, the oldest
snapshot there is, or since start). Quantiles are interpolated within the
bucket they fall in, as Prometheus's ``histogram_quantile`` does: they are as
precise as the buckets.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.admin.params import json_response
from bridge.admin.routes import BRIDGE_KEY

__all__ = ["WINDOW", "Freshness", "add_freshness_routes", "histogram_quantile"]

WINDOW = 300.0
SNAPSHOT_EVERY = 10.0
_KEEP = int(WINDOW / SNAPSHOT_EVERY) + 2

Buckets = dict[float, float]
"""Upper bound (``le``, ``inf`` last) → cumulative count."""


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of a cumulative histogram; None when it holds nothing."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound is all we know
            inside = count - below
            share = 0.0 if inside <= 0 else (rank - below) / inside
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _difference(now: Buckets, then: Buckets) -> Buckets:
    return {bound: max(0.0, count - then.get(bound, 0.0)) for bound, count in now.items()}


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    by_subscription: dict[str, Buckets]


def _summary(buckets: Buckets) -> dict[str, Any]:
    count = buckets.get(math.inf, 0.0)
    return {
        "count": int(count),
        "p50": histogram_quantile(0.5, buckets),
        "p99": histogram_quantile(0.99, buckets),
    }


def read_histogram(samples: Iterable[Any]) -> dict[str, Buckets]:
    """Cumulative buckets by subscription from a histogram's collected samples."""
    found: dict[str, Buckets] = {}
    for sample in samples:
        if sample.name.endswith("_bucket"):
            bound = float(sample.labels["le"])
            found.setdefault(sample.labels["subscription"], {})[bound] = float(sample.value)
    return found


class Freshness:
    """The snapshots one admin API keeps of the freshness histogram."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._snapshots: deque[_Snapshot] = deque(maxlen=_KEEP)

    def report(self, current: dict[str, Buckets], names: Sequence[str]) -> dict[str, Any]:
        """What the endpoint answers for the histogram as it is now."""
        now = self._clock()
        baseline = self._baseline(now)
        if not self._snapshots or now - self._snapshots[-1].at >= SNAPSHOT_EVERY:
            self._snapshots.append(_Snapshot(now, current))
        since = 0.0 if baseline is None else now - baseline.at
        rows = []
        for name in names:
            total = current.get(name, {})
            then = {} if baseline is None else baseline.by_subscription.get(name, {})
            rows.append(
                {
                    "name": name,
                    "recent": _summary(_difference(total, then)),
                    "total": _summary(total),
                }
            )
        return {
            "window_s": WINDOW,
            "recent_s": round(since, 1) if baseline is not None else None,
            "subscriptions": rows,
        }

    def _baseline(self, now: float) -> _Snapshot | None:
        """The newest snapshot at least a window old, else the oldest one there is."""
        chosen = None
        for snapshot in self._snapshots:
            if now - snapshot.at >= WINDOW or chosen is None:
                chosen = snapshot
        return chosen


FRESHNESS_KEY = web.AppKey("freshness", Freshness)


async def freshness(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    current = read_histogram(
        sample for metric in bridge.metrics.freshness.collect() for sample in metric.samples
    )
    names = [s.name for s in bridge.settings.subscriptions]
    return json_response(request.app[FRESHNESS_KEY].report(current, names))


def add_freshness_routes(app: web.Application) -> None:
    app[FRESHNESS_KEY] = Freshness()
    app.router.add_get("/api/freshness", freshness)
