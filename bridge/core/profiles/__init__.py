"""Built-in profiles and the registry that names them.

``settings.profiles`` lists profile names; :func:`load_profiles` turns them
into :class:`~bridge.core.profiles.base.Profile` objects. A new built-in profile
(``emqx``, ``aws_iot``, ``remote_access``) is one module here plus one
:func:`register_profile` call below; plugins call :func:`register_profile`
themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.core.profiles.aws_iot import AwsIotProfile
from bridge.core.profiles.base import Draft, Payload, Profile, Rejected
from bridge.core.profiles.emqx import EmqxProfile
from bridge.core.profiles.native import NativeProfile
from bridge.core.profiles.remote_access import RemoteAccessProfile
from bridge.errors import ConfigError

__all__ = [
    "Draft",
    "Payload",
    "Profile",
    "Rejected",
    "known_profiles",
    "load_profiles",
    "register_profile",
]

ProfileFactory = Callable[[], Profile]

_REGISTRY: dict[str, ProfileFactory] = {}


def register_profile(name: str, factory: ProfileFactory) -> None:
    """Make ``name`` usable in ``settings.profiles``; a second registration replaces the first."""
    _REGISTRY[name] = factory


def known_profiles() -> list[str]:
    return sorted(_REGISTRY)


def load_profiles(names: Sequence[str]) -> list[Profile]:
    """The profiles ``names`` asks for, in its order; an unknown name is a config error."""
    unknown = [name for name in names if name not in _REGISTRY]
    if unknown:
        problems = [
            f"profiles: unknown profile '{name}'; known: {', '.join(known_profiles())}"
            for name in unknown
        ]
        raise ConfigError(problems[0], problems)
    seen: set[str] = set()
    profiles: list[Profile] = []
    for name in names:
        if name not in seen:  # listing a profile twice changes nothing
            seen.add(name)
            profiles.append(_REGISTRY[name]())
    return profiles


register_profile("native", NativeProfile)
register_profile("emqx", EmqxProfile)
register_profile("aws_iot", AwsIotProfile)
register_profile("remote_access", RemoteAccessProfile)
