"""Prometheus metrics of one bridge instance.

Each :class:`Metrics` owns its own ``CollectorRegistry`` so that several
bridges can live in one process (the test suite does this) without clashing
on the global registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
        r = self.registry
        self.messages_received = Counter(
            "hookbridge_messages_received", "MQTT messages received", registry=r
        )
        self.events_received = Counter(
            "hookbridge_events_received", "Events accepted, by type", ["type"], registry=r
        )
        self.events_duplicate = Counter(
            "hookbridge_events_duplicate", "Events already stored (redeliveries)", registry=r
        )
        self.rejected = Counter(
            "hookbridge_messages_rejected", "Messages rejected, by reason", ["reason"], registry=r
        )
        self.deliveries = Counter(
            "hookbridge_deliveries",
            "Delivery attempts, by subscription and outcome",
            ["subscription", "outcome"],
            registry=r,
        )
        self.attempt_latency = Histogram(
            "hookbridge_attempt_latency_seconds",
            "HTTP attempt latency",
            ["subscription"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "hookbridge_end_to_end_latency_seconds",
            "From MQTT receipt to a 2xx answer",
            ["subscription"],
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.freshness = Histogram(
            "hookbridge_delivery_freshness_seconds",
            "From the device's publish time (when its clock is sane, else the receipt) "
            "to the receiver's 2xx",
            ["subscription"],
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "hookbridge_queue_depth", "Pending deliveries", ["subscription"], registry=r
        )
        self.oldest_pending_age = Gauge(
            "hookbridge_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending)",
            ["subscription"],
            registry=r,
        )
        self.in_flight = Gauge(
            "hookbridge_in_flight", "Attempts in flight", ["subscription"], registry=r
        )
        self.dead = Counter(
            "hookbridge_deliveries_dead", "Deliveries that went dead", ["subscription"], registry=r
        )
        self.too_old = Counter(
            "hookbridge_deliveries_too_old",
            "Deliveries that went dead unsent, held longer than retention.max_event_age",
            ["subscription"],
            registry=r,
        )
        self.subscription_disabled = Gauge(
            "hookbridge_subscription_disabled",
            "1 when the subscription is disabled",
            ["subscription"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "hookbridge_circuit_open",
            "1 while the subscription's circuit breaker is open",
            ["subscription"],
            registry=r,
        )
        self.broker_connected = Gauge(
            "hookbridge_broker_connected", "1 while connected to the broker", registry=r
        )
        self.store_commit_latency = Histogram(
            "hookbridge_store_commit_seconds",
            "Time to commit one ingest batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_batch_size = Histogram(
            "hookbridge_ingest_batch_size",
            "Messages per ingest commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )

        self.concurrency_limit = Gauge(
            "hookbridge_concurrency_limit",
            "Attempts the adaptive limit lets be in flight at once",
            ["subscription"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
