"""Topic patterns of rules and telemetry: literal levels and named one-level wildcards.

Pure and free of configuration, so the configuration's own checks can use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["TopicPattern"]

_NAMED_LEVEL = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class TopicPattern:
    """``site/{site}/rdp/{device_id}/{action}``: literal levels and named one-level wildcards."""

    __slots__ = ("_levels", "filter", "names", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        levels: list[tuple[bool, str]] = []  # (is_named, name or literal text)
        for level in template.split("/"):
            named = _NAMED_LEVEL.match(level)
            if named:
                levels.append((True, named.group(1)))
            elif any(c in level for c in "{}+#"):
                raise ValueError(
                    f"level '{level}' must be literal text or one whole {{name}} level"
                )
            else:
                levels.append((False, level))
        names = [text for is_named, text in levels if is_named]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"level name '{duplicates[0]}' is used twice")
        self._levels = tuple(levels)
        self.names = tuple(names)
        self.filter = "/".join("+" if is_named else text for is_named, text in levels)

    def match(self, levels: Sequence[str]) -> dict[str, str] | None:
        """The named levels of ``levels`` when the topic fits the pattern, else None."""
        if len(levels) != len(self._levels):
            return None
        named: dict[str, str] = {}
        for (is_named, text), level in zip(self._levels, levels, strict=True):
            if is_named:
                named[text] = level
            elif level != text:
                return None
        return named
