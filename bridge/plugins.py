"""The plugin loader under its former path: use :mod:`bridge.plugin`."""

from bridge.plugin import filter_allows, filter_for, load_plugins

__all__ = ["filter_allows", "filter_for", "load_plugins"]
