"""The plugin API under its former path: use :mod:`bridge.plugin`."""

from bridge.plugin import Event

__all__ = ["Event"]
