"""From an MQTT message to a stored event: the client, presence tracking, the dead-letter file."""
