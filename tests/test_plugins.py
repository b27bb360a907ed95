"""Plugins from the example package, visible to the tests only (tests/support/plugins.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from bridge import plugin as plugins
from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.conftest import TEST_PLUGIN_PATHS, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.plugins import without_test_plugins
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


def test_the_example_plugin_is_found() -> None:
    loaded = plugins.load_plugins()
    assert loaded.normalisers["example_sensors"] == "hookbridge_plugin_example:SensorProfile"
    assert "example_text" in loaded.formats
    assert "example_even_seq" in loaded.filters


async def test_plugin_normaliser_format_and_filter_end_to_end(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    subscriptions = [
        {"name": "text", "url": receiver.url, "format": "example_text"},
        {
            "name": "even",
            "url": receiver.url.replace("/hook", "/even"),
            "filter_plugin": "example_even_seq",
        },
    ]
    config = bridge_config(
        mosquitto, tmp_path, subscriptions, profiles=["native", "example_sensors"]
    )
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("sensors/s-1/alive", {"id": "a1"}),
                    ("devices/dev-1/events", {"type": "session.started", "id": "m1", "seq": 1}),
                    ("devices/dev-1/events", {"type": "session.started", "id": "m2", "seq": 2}),
                ]
            )
            # text gets all three; even gets only seq 2
            await wait_until(lambda: len(receiver.requests) >= 4, timeout=15)
    text = [r for r in receiver.requests if r.path == "/hook"]
    even = [r for r in receiver.requests if r.path == "/even"]
    assert len(text) == 3 and len(even) == 1
    lines = sorted(r.body.decode() for r in text)
    assert any(line.startswith("device.online evt_") and line.endswith(" s-1\n") for line in lines)
    assert all(r.headers["content-type"] == "text/plain; charset=utf-8" for r in text)
    assert even[0].json()["data"]["seq"] == 2


def test_unknown_plugin_names_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "subscriptions": [
                    {"name": "a", "url": "http://x.example", "format": "nope"},
                    {"name": "b", "url": "http://x.example", "filter_plugin": "nope"},
                ]
            }
        )
    text = "\n".join(caught.value.problems)
    assert "subscriptions[0].format: unknown format; known:" in text
    assert "subscriptions[1].filter_plugin: no installed plugin provides this filter" in text
    assert "nope" not in text  # values are never echoed back (a misplaced secret stays hidden)


def test_a_broken_plugin_is_a_startup_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint("broken_one", "no_such_module_hb:thing", plugins.FORMAT_GROUP)

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [broken] if group == plugins.FORMAT_GROUP else []

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    with pytest.raises(ConfigError, match=r"plugin 'broken_one'.*no_such_module_hb:thing"):
        plugins.load_plugins(reload=True)
    monkeypatch.undo()
    plugins.load_plugins(reload=True)  # leave the registries as the suite expects


def test_the_example_plugin_is_for_tests_only(tmp_path: Path) -> None:
    """The virtualenv users run from does not load the test-only format; the tests'
    own environment (the plugin's path added) does."""
    config = tmp_path / "hookbridge.yaml"
    config.write_text(
        "mqtt: {url: 'mqtt://127.0.0.1:1883'}\n"
        "subscriptions:\n"
        "  - {name: text, url: 'https://crm.example.com/hook', format: example_text}\n",
        encoding="utf-8",
    )
    cli = Path(sys.executable).parent / "hookbridge"
    assert cli.exists(), cli
    command = [str(cli), "check-config", str(config)]
    user = without_test_plugins(dict(os.environ), TEST_PLUGIN_PATHS)
    as_user = subprocess.run(
        command, capture_output=True, text=True, env=user, cwd=tmp_path, timeout=60, check=False
    )
    assert as_user.returncode != 0, as_user.stdout
    assert "unknown format" in as_user.stdout + as_user.stderr
    assert "example_text" not in as_user.stdout + as_user.stderr
    for_tests = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert for_tests.returncode == 0, for_tests.stdout + for_tests.stderr
