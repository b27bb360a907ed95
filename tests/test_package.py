"""The built wheel holds the whole package: data files, the entry point, the plugin API."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bridge.events
import bridge.formats
import bridge.plugin
import bridge.plugins
import bridge.profiles
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in ``cwd`` with ``env``, its output kept as text."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def test_the_wheel_runs_the_cli_with_its_data_files(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("hookbridge-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(unpacked)
    assert "bridge/admin/dashboard.html" in names
    assert "bridge/admin/page.js" in names  # the script both pages load
    assert "bridge/py.typed" in names
    assert "bridge/cli/__main__.py" in names
    (entry_points,) = unpacked.glob("hookbridge-*.dist-info/entry_points.txt")
    assert "hookbridge = bridge.cli:main" in entry_points.read_text(encoding="utf-8")
    # The unpacked wheel first on the path: the dependencies come from this environment.
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    shown = _python(
        "import bridge, sys; print(bridge.__file__); sys.argv = ['hookbridge', '--help'];"
        " from bridge.cli import main; main()",
        env=env,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith(str(unpacked))
    assert "check-config" in shown.stdout
    dashboard = _python(
        "from importlib.resources import files;"
        " print(len(files('bridge.admin').joinpath('dashboard.html').read_bytes()))",
        env=env,
        cwd=tmp_path,
    )
    assert dashboard.returncode == 0, dashboard.stderr
    assert int(dashboard.stdout) > 1000


def test_python_dash_m_bridge_cli_works() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout


def test_the_plugin_api_is_one_module_with_what_its_docstring_promises() -> None:
    promised = {"Event", "Profile", "Payload", "Draft", "Rejected", "Encoded"}
    promised |= {"register_profile", "register_format", "load_plugins"}
    assert promised <= set(bridge.plugin.__all__)
    assert all(getattr(bridge.plugin, name) is not None for name in bridge.plugin.__all__)
    assert bridge.plugin.Event.__module__ == "bridge.core.events"
    # The groups a plugin's pyproject.toml names, as the docs spell them.
    groups = (
        bridge.plugin.NORMALISER_GROUP,
        bridge.plugin.FORMAT_GROUP,
        bridge.plugin.FILTER_GROUP,
    )
    assert groups == ("hookbridge.normalisers", "hookbridge.formats", "hookbridge.filters")


def test_the_former_plugin_paths_are_the_same_objects() -> None:
    assert bridge.events.Event is bridge.plugin.Event
    assert bridge.formats.Encoded is bridge.plugin.Encoded
    assert bridge.formats.register_format is bridge.plugin.register_format
    assert bridge.profiles.Draft is bridge.plugin.Draft
    assert bridge.profiles.register_profile is bridge.plugin.register_profile
    assert bridge.plugins.load_plugins is bridge.plugin.load_plugins
