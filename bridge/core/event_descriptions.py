"""One line per catalogue type: what happened, as a person picking event types reads it.

The settings page lists these beside each type a subscription may pick; the
README's table of events says the same (a test keeps them together).
"""

from __future__ import annotations

__all__ = ["DESCRIPTIONS"]

DESCRIPTIONS: dict[str, str] = {
    "device.added": "a device was registered",
    "device.deleted": "a device was removed",
    "device.online": "a device connected, or was seen again after being offline",
    "device.offline": "a device disconnected, its Last Will fired, or it stayed silent too long",
    "session.started": "a remote session began",
    "session.ended": "a remote session ended (duration_s)",
    "session.scheduled": "a session was booked for later (scheduled_for)",
    "session.customer_joined": "the customer joined a session",
    "file_transfer.started": "a file transfer began",
    "file_transfer.completed": "a file transfer finished (size_bytes)",
    "file_transfer.failed": "a file transfer failed (reason, error)",
    "bulk_deployment.started": "a deployment to many devices began",
    "bulk_deployment.completed": "a bulk deployment finished (succeeded, failed)",
    "bulk_deployment.failed": "a bulk deployment failed (error)",
    "telemetry.reported": (
        "a device reported readings: any JSON, from telemetry.topics or the events topic"
    ),
    "bridge.test": "an operator's test ping",
    "bridge.subscription_disabled": (
        "alert: a subscription was disabled (410 Gone, or failing too long)"
    ),
    "bridge.circuit_opened": "alert: a receiver failed repeatedly and is paused for a cool-down",
    "bridge.delivery_dead": "alert: a delivery ran out of attempts or got too old",
    "bridge.deliveries_expired": (
        "alert: a subscription's deliveries were held longer than retention.max_event_age"
        " and went dead unsent"
    ),
    "bridge.store_refused": (
        "alert: the store refused a message even in quarantine; it went to the dead-letter file"
    ),
    "bridge.store_log_large": (
        "alert: the SQLite write-ahead log passed store.log_alert (a reader holding a "
        "transaction, or checkpoints not running)"
    ),
    "bridge.pipe_reply_dead": (
        "alert: a pipe subscription's answer could not be published before the request's "
        "expiry (or reply_max_age) and went dead"
    ),
    "bridge.inbound_dead": (
        "alert: an inbound webhook's message could not be published before max_age and went dead"
    ),
}
"""Every catalogue type and what it means."""
