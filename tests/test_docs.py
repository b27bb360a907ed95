"""The reference in docs/ is current: metric names, configuration keys and commands."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import typer.main
from pydantic import BaseModel

from bridge.admin.openapi import openapi_document
from bridge.cli import app
from bridge.config import Settings
from tests.conftest import crm_subscription, running_bridge
from tests.support.admin import admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TEXTS = {
    path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}
NOT_METRICS = {"hookbridge_plugin_example"}  # the example plugin's module name


def _metric_names_in_docs() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, text in TEXTS.items():
        for metric in re.findall(r"\bhookbridge_[a-z0-9_]+", text):
            if metric not in NOT_METRICS:
                found.setdefault(metric, set()).add(name)
    return found


def _exposed(scrape: str) -> set[str]:
    """Metric names as a query uses them: counters with ``_total``, histograms by base name."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", scrape, re.M):
        if name.endswith("_created"):  # the client library's creation stamps, not metrics
            continue
        counter = kind == "counter" and not name.endswith("_total")
        names.add(f"{name}_total" if counter else name)
    return names


async def test_metric_names_in_the_docs_match_a_real_scrape(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    subscription = crm_subscription(receiver)
    config = admin_config(mosquitto, tmp_path, [subscription])
    async with running_bridge(config), admin_client(config) as admin:

        async def scraped() -> bool:
            status, _ = await admin.get("/metrics")
            return status == 200

        await wait_until(scraped, message="the admin API answers /metrics")
        _, scrape = await admin.get("/metrics")
    exposed = _exposed(scrape)
    assert "hookbridge_deliveries_total" in exposed
    for metric, pages in _metric_names_in_docs().items():
        assert metric in exposed, f"{sorted(pages)} name {metric}, which /metrics does not serve"
    table = set(re.findall(r"^\| `(hookbridge_[a-z0-9_]+)` \|", TEXTS["docs/operating.md"], re.M))
    assert exposed <= table, f"not in the metrics table of docs/operating.md: {exposed - table}"


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for argument in typing.get_args(annotation) for m in _models(argument)]


def _undocumented(model: type[BaseModel], place: str, text: str) -> list[str]:
    """Keys of ``model`` (and the models inside it) that no code span in ``text`` names."""
    spans = re.findall(r"`([^`]*)`", text)
    missing = []
    for key, field in model.model_fields.items():
        name = field.alias or key
        pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
        if not any(pattern.search(span) for span in spans):
            missing.append(f"{place}{name}")
        for inner in _models(field.annotation):
            if inner is not model:
                missing += _undocumented(inner, f"{place}{name}.", text)
    return missing


def test_every_configuration_key_is_in_the_reference() -> None:
    reference = TEXTS["docs/configuration.md"]
    missing = []
    for section, field in Settings.model_fields.items():
        assert f"\n## `{section}`\n" in reference, section
        part = reference.split(f"\n## `{section}`\n", 1)[1].split("\n## ", 1)[0]
        for model in _models(field.annotation):
            missing += _undocumented(model, f"{section}.", part)
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every runnable command under ``group`` by its path (``deliveries list``)."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):  # a group of commands
            found.update(_commands(command, f"{path} "))
        else:
            found[path] = command
    return found


def _options(command: Any) -> set[str]:
    return {option for param in command.params for option in param.opts if option[:2] == "--"}


def test_commands_in_the_docs_exist_and_every_command_is_documented() -> None:
    commands = _commands(typer.main.get_command(app))
    assert "deliveries replay" in commands
    groups = {path.split(" ")[0] for path in commands if " " in path}
    mentioned = set()
    for name, text in TEXTS.items():
        for words, rest in re.findall(r"\bhookbridge ([a-z][a-z-]*(?: [a-z][a-z-]*)?)(.*)", text):
            first, _, second = words.partition(" ")
            path = words if first in groups else first
            if first not in groups and first not in commands:
                continue  # prose ("… as hookbridge sees it"), not a command line
            assert path in commands, f"{name}: `hookbridge {words}` is not a command"
            mentioned.add(path)
            line = rest.split("`", 1)[0].split("#", 1)[0]  # the code span or line only
            tail = second if first not in groups else ""
            for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", f"{tail} {line}"):
                assert option in _options(commands[path]) | {"--help"}, (
                    f"{name}: `hookbridge {path}` has no option {option}"
                )
    assert mentioned == set(commands), f"commands no page shows: {set(commands) - mentioned}"


def test_every_route_of_the_api_is_in_the_reference_and_nothing_else() -> None:
    routes = {
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    table = TEXTS["docs/api.md"].split("| endpoint | what it does |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE) /[^`]*)`", table))
    assert documented == routes, (routes - documented, documented - routes)
