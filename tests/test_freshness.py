"""The freshness quantiles the admin API computes from its histogram (pure parts)."""

from __future__ import annotations

import math

import pytest

from bridge.admin.freshness import WINDOW, Freshness, histogram_quantile

INF = math.inf


def test_quantiles_interpolate_within_their_bucket() -> None:
    buckets = {0.1: 0.0, 1.0: 50.0, 10.0: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.55)
    assert histogram_quantile(0.99, buckets) == pytest.approx(9.82)
    assert histogram_quantile(0.5, {1.0: 0.0, INF: 0.0}) is None
    assert histogram_quantile(0.5, {}) is None
    # Beyond the last finite bucket, its bound is all that is known.
    assert histogram_quantile(0.99, {1.0: 1.0, INF: 10.0}) == 1.0


def test_recent_is_the_difference_from_a_window_ago() -> None:
    now = [1000.0]
    freshness = Freshness(clock=lambda: now[0])
    slow = {1.0: 0.0, 10.0: 10.0, INF: 10.0}
    first = freshness.report({"crm": slow}, ["crm", "idle"])
    assert first["recent_s"] is None  # no earlier look: recent is since start
    crm, idle = first["subscriptions"]
    assert crm["recent"]["count"] == crm["total"]["count"] == 10
    assert idle["recent"] == {"count": 0, "p50": None, "p99": None}
    now[0] += WINDOW
    fast = {1.0: 20.0, 10.0: 30.0, INF: 30.0}  # 20 more, all under a second
    later = freshness.report({"crm": fast}, ["crm"])
    assert later["recent_s"] == WINDOW
    (row,) = later["subscriptions"]
    assert row["recent"]["count"] == 20
    assert row["recent"]["p99"] is not None and row["recent"]["p99"] <= 1.0
    assert row["total"]["count"] == 30
    assert row["total"]["p50"] > 0.5
