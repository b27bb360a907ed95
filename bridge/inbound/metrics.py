"""Prometheus metrics of inbound webhooks and the outbox that publishes them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["InboundMetrics"]


class InboundMetrics:
    """Registered on the bridge's own registry (see :class:`bridge.admin.metrics.Metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.accepted = Counter(
            "hookbridge_inbound_accepted",
            "Inbound webhooks accepted (committed to the outbox), by inbound entry",
            ["inbound"],
            registry=r,
        )
        self.published = Counter(
            "hookbridge_inbound_published",
            "Inbound messages the broker acknowledged, by inbound entry",
            ["inbound"],
            registry=r,
        )
        self.failed = Counter(
            "hookbridge_inbound_publish_failures",
            "Failed publish attempts of inbound messages (refused, timed out, disconnected)",
            ["inbound"],
            registry=r,
        )
        self.dead = Counter(
            "hookbridge_inbound_dead",
            "Inbound messages given up on (older than max_age), by inbound entry",
            ["inbound"],
            registry=r,
        )
        self.pending = Gauge(
            "hookbridge_inbound_pending", "Inbound messages waiting to be published", registry=r
        )
        self.oldest_pending_age = Gauge(
            "hookbridge_inbound_oldest_pending_age_seconds",
            "Age of the oldest inbound message waiting to be published (0 when none)",
            registry=r,
        )
