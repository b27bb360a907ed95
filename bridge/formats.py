"""The plugin API under its former path: use :mod:`bridge.plugin`."""

from bridge.plugin import Encoded, Encoder, register_format

__all__ = ["Encoded", "Encoder", "register_format"]
