"""The example plugin (tests/plugin_example), visible to the tests and to nothing else.

It is never installed into the virtualenv a user runs HookBridge from. Instead
:func:`make_test_plugins_visible` writes its distribution metadata (the entry
points of its ``pyproject.toml``) into a temporary directory and puts that
directory and the package's source on ``sys.path`` and on ``PYTHONPATH``, so
this process and every bridge subprocess a test starts find the plugin the way
an installed one is found: through ``importlib.metadata`` entry points.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

__all__ = ["EXAMPLE_PLUGIN", "make_test_plugins_visible", "without_test_plugins"]

EXAMPLE_PLUGIN = Path(__file__).resolve().parent.parent / "plugin_example"
_SHARED = "HOOKBRIDGE_TEST_PLUGIN_METADATA"  # where the metadata is, for pytest's workers


def _write_metadata(target: Path) -> None:
    project = tomllib.loads((EXAMPLE_PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))
    meta = project["project"]
    name = meta["name"].replace("-", "_")
    info = target / f"{name}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n",
        encoding="utf-8",
    )
    lines = []
    for group, entries in meta.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


def make_test_plugins_visible() -> list[str]:
    """Make the example plugin importable and discoverable here and in subprocesses.

    The first process (pytest itself) writes the metadata; its workers and the
    bridges they start inherit the paths through the environment.
    """
    shared = os.environ.get(_SHARED)
    if shared and Path(shared).is_dir():
        target = Path(shared)
    else:
        target = Path(tempfile.mkdtemp(prefix="hookbridge-test-plugins-"))
        _write_metadata(target)
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        os.environ[_SHARED] = str(target)
    paths = [str(target), str(EXAMPLE_PLUGIN)]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *(p for p in inherited if p not in paths)])
    return paths


def without_test_plugins(env: dict[str, str], paths: list[str]) -> dict[str, str]:
    """``env`` as a user has it: the test-only plugin paths taken out of ``PYTHONPATH``."""
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    cleaned = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    if kept:
        cleaned["PYTHONPATH"] = os.pathsep.join(kept)
    return cleaned
