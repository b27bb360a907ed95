"""Prometheus metrics of one bridge instance.

Each :class:`Metrics` owns its own ``CollectorRegistry`` so that several
bridges can live in one process (the test suite does this) without clashing
on the global registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["LaneMetrics", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 36000)


@dataclass(slots=True)
class LaneMetrics:
    """One subscription's children of the per-attempt metrics, looked up once.

    ``labels()`` costs a lock and a dict lookup on every call; an attempt
    touches half a dozen of these, so a lane keeps them at hand.
    """

    in_flight: Any
    attempt_latency: Any
    end_to_end_latency: Any
    freshness: Any
    circuit_open: Any
    _deliveries: Counter
    _name: str
    _by_outcome: dict[str, Any] = field(default_factory=dict)

    def attempt(self, outcome: str) -> Any:
        """The ``hookbridge_deliveries_total`` child of one outcome."""
        child = self._by_outcome.get(outcome)
        if child is None:
            child = self._by_outcome[outcome] = self._deliveries.labels(self._name, outcome)
        return child


class Metrics:
    def for_lane(self, subscription: str) -> LaneMetrics:
        return LaneMetrics(
            in_flight=self.in_flight.labels(subscription),
            attempt_latency=self.attempt_latency.labels(subscription),
            end_to_end_latency=self.end_to_end_latency.labels(subscription),
            freshness=self.freshness.labels(subscription),
            circuit_open=self.circuit_open.labels(subscription),
            _deliveries=self.deliveries,
            _name=subscription,
        )

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Every metric registers here, not on prometheus_client's global registry.
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)
        by_subscription = ["subscription"]
        self.messages_received = counter("hookbridge_messages_received", "MQTT messages received")
        self.events_received = counter(
            "hookbridge_events_received", "Events accepted, by type", ["type"]
        )
        self.events_duplicate = counter(
            "hookbridge_events_duplicate", "Events already stored (redeliveries)"
        )
        self.rejected = counter(
            "hookbridge_messages_rejected", "Messages rejected, by reason", ["reason"]
        )
        self.deliveries = counter(
            "hookbridge_deliveries",
            "Delivery attempts, by subscription and outcome",
            ["subscription", "outcome"],
        )
        self.attempt_latency = histogram(
            "hookbridge_attempt_latency_seconds",
            "HTTP attempt latency",
            by_subscription,
            buckets=_LATENCY_BUCKETS,
        )
        self.end_to_end_latency = histogram(
            "hookbridge_end_to_end_latency_seconds",
            "From MQTT receipt to a 2xx answer",
            by_subscription,
            buckets=_E2E_BUCKETS,
        )
        self.freshness = histogram(
            "hookbridge_delivery_freshness_seconds",
            "From the device's publish time (when its clock is sane, else the receipt) "
            "to the receiver's 2xx",
            by_subscription,
            buckets=_E2E_BUCKETS,
        )
        self.queue_depth = gauge("hookbridge_queue_depth", "Pending deliveries", by_subscription)
        self.oldest_pending_age = gauge(
            "hookbridge_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending)",
            by_subscription,
        )
        self.in_flight = gauge("hookbridge_in_flight", "Attempts in flight", by_subscription)
        self.dead = counter(
            "hookbridge_deliveries_dead", "Deliveries that went dead", by_subscription
        )
        self.too_old = counter(
            "hookbridge_deliveries_too_old",
            "Deliveries that went dead unsent, held longer than retention.max_event_age",
            by_subscription,
        )
        self.caught_up = counter(
            "hookbridge_caught_up",
            "Deliveries made due at once when their receiver answered again",
            by_subscription,
        )
        self.subscription_disabled = gauge(
            "hookbridge_subscription_disabled",
            "1 when the subscription is disabled",
            by_subscription,
        )
        self.circuit_open = gauge(
            "hookbridge_circuit_open",
            "1 while the subscription's circuit breaker is open",
            by_subscription,
        )
        self.broker_connected = gauge(
            "hookbridge_broker_connected", "1 while connected to the broker"
        )
        self.broker_dropped = counter(
            "hookbridge_broker_dropped_messages",
            "Messages the broker counted as dropped (its $SYS counter, broker-wide: every "
            "client's), as this bridge saw it grow",
        )
        self.store_commit_latency = histogram(
            "hookbridge_store_commit_seconds",
            "Time to commit one ingest batch",
            buckets=_LATENCY_BUCKETS,
        )
        self.store_log_bytes = gauge(
            "hookbridge_store_log_bytes",
            "Size of the SQLite write-ahead log file (measured every few seconds)",
        )
        self.store_log_large = counter(
            "hookbridge_store_log_large",
            "Times the SQLite write-ahead log passed store.log_alert",
        )
        self.ingest_batch_size = histogram(
            "hookbridge_ingest_batch_size",
            "Messages per ingest commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
        )

        self.http_resends = counter(
            "hookbridge_http_resends",
            "Requests sent again on a new connection: the reused one was lost before any answer",
            by_subscription,
        )
        self.concurrency_limit = gauge(
            "hookbridge_concurrency_limit",
            "Attempts the adaptive limit lets be in flight at once",
            by_subscription,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
