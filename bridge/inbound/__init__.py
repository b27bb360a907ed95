"""Inbound webhooks to MQTT under per-sender topic rights."""
