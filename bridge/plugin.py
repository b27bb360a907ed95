"""Plugins: installed packages that add normalisers, payload formats and filters.

This is the one stable module a plugin imports from: the event (``Event``), a
profile's parts (``Profile``, ``Payload``, ``Draft``, ``Rejected``), an
encoder's result (``Encoded``), and the registries. Where a name lives inside
the package may change; ``from bridge.plugin import …`` does not.

A plugin is a small Python package declaring entry points in one of three
groups; the entry point's name is what a configuration refers to:

``hookbridge.normalisers``
    A profile factory (``() -> Profile``, see :class:`Profile`),
    registered with :func:`register_profile`; listed in
    ``profiles:``.
``hookbridge.formats``
    An encoder (``(Event) -> Encoded``, see :class:`Encoded`); used as a
    subscription's ``format:``.
``hookbridge.filters``
    A predicate (``(envelope: dict) -> bool``) over the event envelope; used
    as a subscription's ``filter_plugin:``, checked after ``events`` and
    ``filter``. A predicate that raises for an event does not match it.

Plugins are loaded once per process (:func:`load_plugins`, called when a
configuration is validated and when the bridge starts). A plugin that cannot
be imported, or is not what its group expects, is a
:class:`~bridge.errors.ConfigError` naming the plugin: the bridge does not
start half-equipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, TypeVar

from bridge.core.events import Event
from bridge.core.formats import Encoded, Encoder, register_format
from bridge.core.profiles import Draft, Payload, Profile, Rejected, register_profile
from bridge.errors import ConfigError
from bridge.observe.logs import get_logger

__all__ = [
    "FILTER_GROUP",
    "FORMAT_GROUP",
    "NORMALISER_GROUP",
    "Draft",
    "Encoded",
    "Encoder",
    "Event",
    "Loaded",
    "Payload",
    "Profile",
    "Rejected",
    "filter_allows",
    "filter_for",
    "load_plugins",
    "register_format",
    "register_profile",
    "wanting",
]

NORMALISER_GROUP = "hookbridge.normalisers"
FORMAT_GROUP = "hookbridge.formats"
FILTER_GROUP = "hookbridge.filters"

EnvelopeFilter = Callable[[Mapping[str, Any]], bool]

log = get_logger("hookbridge.plugins")


@dataclass
class Loaded:
    """What the installed plugins added, by group: entry-point name → ``module:attr``."""

    normalisers: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)


_loaded: Loaded | None = None
_FILTERS: dict[str, EnvelopeFilter] = {}


def _load(entry: EntryPoint) -> Callable[..., Any]:
    where = f"plugin '{entry.name}' ({entry.group} = {entry.value})"
    try:
        loaded = entry.load()
    except Exception as exc:
        raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not callable(loaded):
        raise ConfigError(f"{where} is not callable")
    return loaded  # type: ignore[no-any-return]


def _add_normaliser(entry: EntryPoint) -> None:
    from bridge.core.profiles import register_profile  # the profiles import the event catalogue

    factory = _load(entry)
    register_profile(entry.name, factory)


def _add_format(entry: EntryPoint) -> None:
    encoder: Encoder = _load(entry)
    register_format(entry.name, encoder)


def _add_filter(entry: EntryPoint) -> None:
    _FILTERS[entry.name] = _load(entry)


def load_plugins(*, reload: bool = False) -> Loaded:
    """Load every installed plugin once; raise :class:`ConfigError` naming a broken one."""
    global _loaded  # noqa: PLW0603 - plugins are process-wide, like the registries they fill
    if _loaded is not None and not reload:
        return _loaded
    loaded = Loaded()
    for group, add, names in (
        (NORMALISER_GROUP, _add_normaliser, loaded.normalisers),
        (FORMAT_GROUP, _add_format, loaded.formats),
        (FILTER_GROUP, _add_filter, loaded.filters),
    ):
        for entry in entry_points(group=group):
            add(entry)
            names[entry.name] = entry.value
    _loaded = loaded
    if loaded.normalisers or loaded.formats or loaded.filters:
        log.info(
            "plugins loaded",
            normalisers=sorted(loaded.normalisers),
            formats=sorted(loaded.formats),
            filters=sorted(loaded.filters),
        )
    return loaded


def filter_for(name: str) -> EnvelopeFilter | None:
    """The filter plugin called ``name``, or None when no installed plugin has that name."""
    load_plugins()
    return _FILTERS.get(name)


def filter_allows(name: str | None, envelope: Mapping[str, Any]) -> bool:
    """Whether filter plugin ``name`` (None: no filter) lets the event through; never raises."""
    if name is None:
        return True
    predicate = filter_for(name)
    if predicate is None:
        return False
    try:
        return bool(predicate(envelope))
    except Exception:  # noqa: BLE001 - a filter failing on an event simply does not match it
        log.warning("filter plugin failed on an event", plugin=name)
        return False


class _Filtered(Protocol):
    @property
    def filter_plugin(self) -> str | None: ...


_Sub = TypeVar("_Sub", bound=_Filtered)


def wanting(matched: Sequence[_Sub], event: Event) -> list[_Sub]:
    """Of the subscriptions the router ``matched`` for ``event`` (event globs, JMESPath
    filter), in configuration order, those whose filter plugin lets it through.

    Ingest routes with it, and pipe mode asks it which pipe subscription answers:
    both must agree, or a subscription whose plugin refuses the event could take
    the answer from the one that receives it.
    """
    if all(s.filter_plugin is None for s in matched):
        return list(matched)
    envelope = event.to_dict()  # once, for every plugin
    return [s for s in matched if filter_allows(s.filter_plugin, envelope)]
