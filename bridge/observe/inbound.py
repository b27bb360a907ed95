"""Prometheus metrics of inbound webhooks, pipe replies and the outbox that publishes them.

The pending gauges count the whole outbox (inbound messages and pipe replies).
"""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["InboundMetrics"]

_REPLY = "reply"  # bridge.store.outbox.OutboxKind.REPLY (a StrEnum: equal to its value)


class InboundMetrics:
    """Registered on the bridge's own registry (see :class:`bridge.observe.metrics.Metrics`).

    ``kind`` is an outbox message's kind: ``reply`` (a pipe answer) or ``inbound``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        counter = partial(Counter, registry=registry)
        gauge = partial(Gauge, registry=registry)
        by_inbound, by_subscription = ["inbound"], ["subscription"]  # label names
        self.accepted = counter(
            "hookbridge_inbound_accepted",
            "Inbound webhooks accepted (committed to the outbox), by inbound entry",
            by_inbound,
        )
        self.published = counter(
            "hookbridge_inbound_published",
            "Inbound messages the broker acknowledged, by inbound entry",
            by_inbound,
        )
        self.failed = counter(
            "hookbridge_inbound_publish_failures",
            "Failed publish attempts of inbound messages (refused, timed out, disconnected)",
            by_inbound,
        )
        self.dead = counter(
            "hookbridge_inbound_dead",
            "Inbound messages given up on (older than max_age), by inbound entry",
            by_inbound,
        )
        self.replies_published = counter(
            "hookbridge_pipe_replies_published",
            "Pipe replies the broker acknowledged, by subscription",
            by_subscription,
        )
        self.replies_failed = counter(
            "hookbridge_pipe_reply_publish_failures",
            "Failed publish attempts of pipe replies (refused, timed out, disconnected)",
            by_subscription,
        )
        self.replies_dead = counter(
            "hookbridge_pipe_replies_dead",
            "Pipe replies given up on (past the request's expiry or reply_max_age)",
            by_subscription,
        )
        self.pending = gauge(
            "hookbridge_inbound_pending", "Inbound messages waiting to be published"
        )
        self.oldest_pending_age = gauge(
            "hookbridge_inbound_oldest_pending_age_seconds",
            "Age of the oldest inbound message waiting to be published (0 when none)",
        )

    def published_of(self, kind: str) -> Counter:
        return self.replies_published if kind == _REPLY else self.published

    def failed_of(self, kind: str) -> Counter:
        return self.replies_failed if kind == _REPLY else self.failed

    def dead_of(self, kind: str) -> Counter:
        return self.replies_dead if kind == _REPLY else self.dead
