"""The plugin API under its former path: use :mod:`bridge.plugin`."""

from bridge.plugin import Draft, Payload, Profile, Rejected, register_profile

__all__ = ["Draft", "Payload", "Profile", "Rejected", "register_profile"]
