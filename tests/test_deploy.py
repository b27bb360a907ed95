"""The deploy files: they parse, and they agree with the code on config keys, ports,
probe paths and commands. No container engine runs here; this checks what can be
checked without one."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from bridge.admin.parts import BridgeParts
from bridge.admin.server import create_app
from bridge.config import Settings, parse_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"

ENV = {
    "HOSTNAME": "hookbridge-0",
    "HOOKBRIDGE_CLIENT_ID": "hookbridge-1",
    "MQTT_USERNAME": "hookbridge",
    "MQTT_PASSWORD": "pw",
    "HOOKBRIDGE_STORE_URL": "postgresql://hookbridge:pw@postgres:5432/hookbridge",
    "HOOKBRIDGE_ADMIN_TOKEN": "token-for-tests-0123456789",
    "CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "EXAMPLE_RECEIVER_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.stem == "kustomization":
            continue
        for doc in _documents(path):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def _port(listen: str | None) -> int:
    assert listen is not None
    return int(listen.rsplit(":", 1)[1])


def _dockerfile() -> dict[str, list[str]]:
    """Instructions of the Dockerfile (continuation lines joined), by keyword."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        assert keyword.isupper(), f"not a Dockerfile instruction: {line}"
        found.setdefault(keyword, []).append(rest.strip())
    return found


def test_every_yaml_file_parses() -> None:
    paths = [*DEPLOY.glob("*.yaml"), *K8S.glob("*.yaml")]
    assert len(paths) >= 8
    for path in paths:
        assert _documents(path), path


def test_compose_config_is_valid_and_agrees_with_the_services(env: None) -> None:
    compose = _documents(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert set(services) >= {"mosquitto", "postgres", "hookbridge", "receiver"}
    bridge = services["hookbridge"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in bridge["volumes"])
    assert mounts["./hookbridge.yaml"] == "/etc/hookbridge/hookbridge.yaml"
    assert (DEPLOY / "hookbridge.yaml").is_file()
    # Every ${VAR} the config needs is given to the container.
    config_text = (DEPLOY / "hookbridge.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", config_text))
    assert needed <= set(bridge["environment"]), needed - set(bridge["environment"])

    settings = parse_config(yaml.safe_load(config_text))
    assert settings.store.url.startswith("postgresql://")
    assert settings.mqtt.url == "mqtt://mosquitto:1883"
    assert settings.mqtt.shared_group
    published = [p for p in bridge["ports"] if p.endswith(f":{_port(settings.api.listen)}")]
    assert published == [f"127.0.0.1:8080:{_port(settings.api.listen)}"]
    assert any(s.url.startswith("http://receiver:") for s in settings.subscriptions)

    broker = services["mosquitto"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in broker["volumes"]
    assert any(v.endswith(":/mosquitto/data") for v in broker["volumes"])
    assert set(compose["volumes"]) >= {"mosquitto-data", "postgres-data"}


def test_dockerfile_runs_the_cli_as_non_root_with_a_healthcheck(env: None) -> None:
    instructions = _dockerfile()
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert any("pip install ." in run for run in instructions["RUN"])
    user = instructions["USER"][-1]
    assert user.split(":")[0] not in {"root", "0"}
    entry = yaml.safe_load(instructions["ENTRYPOINT"][0])
    assert entry == ["hookbridge", "run", "-c", "/etc/hookbridge/hookbridge.yaml"]
    settings = parse_config(yaml.safe_load((DEPLOY / "hookbridge.yaml").read_text()))
    port = _port(settings.api.listen)
    assert instructions["EXPOSE"] == [str(port)]
    assert f"127.0.0.1:{port}/healthz" in instructions["HEALTHCHECK"][0]


def test_systemd_unit_runs_the_installed_cli_hardened() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "hookbridge.service").read_text())
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "hookbridge"
    assert command[1:] == ["run", "-c", "/etc/hookbridge/hookbridge.yaml"]
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "hookbridge",
        "KillSignal": "SIGTERM",
    }.items():
        assert service.get(key) == value, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_kubernetes_manifests_agree_with_the_config(env: None) -> None:
    found = _manifests()
    assert set(found) >= {
        "ConfigMap/hookbridge-config",
        "Secret/hookbridge-secrets",
        "StatefulSet/hookbridge",
        "Service/hookbridge",
        "Service/hookbridge-headless",
        "PodDisruptionBudget/hookbridge",
    }
    config_text = found["ConfigMap/hookbridge-config"]["data"]["hookbridge.yaml"]
    settings: Settings = parse_config(yaml.safe_load(config_text))
    assert settings.mqtt.client_id == ENV["HOSTNAME"]  # the pod name: stable per replica
    assert settings.mqtt.shared_group
    assert settings.store.url.startswith("postgresql://")
    port = _port(settings.api.listen)
    assert settings.api.listen == f"0.0.0.0:{port}"

    stateful = found["StatefulSet/hookbridge"]["spec"]
    assert stateful["replicas"] == 2
    assert stateful["serviceName"] == "hookbridge-headless"
    pod = stateful["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"admin": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/hookbridge"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Every ${VAR} of the config comes from the Secret (HOSTNAME is the pod's own).
    secret_keys = set(found["Secret/hookbridge-secrets"]["stringData"])
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", config_text)) - {"HOSTNAME"}
    assert needed <= secret_keys, needed - secret_keys
    assert container["envFrom"] == [{"secretRef": {"name": "hookbridge-secrets"}}]

    selector = stateful["selector"]["matchLabels"]
    assert found["Service/hookbridge"]["spec"]["selector"] == selector
    assert found["PodDisruptionBudget/hookbridge"]["spec"]["selector"]["matchLabels"] == selector
    assert found["Service/hookbridge"]["spec"]["ports"][0]["targetPort"] == "admin"
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def test_mosquitto_conf_sets_what_the_design_names() -> None:
    settings: dict[str, str] = {}
    for raw in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    assert settings["persistence"] == "true"
    assert int(settings["autosave_interval"]) <= 60
    assert int(settings["max_inflight_messages"]) >= 1000
    assert int(settings["max_queued_messages"]) >= 100_000
    assert settings["max_queued_bytes"] == "0"
    assert settings["allow_anonymous"] == "false"
    assert int(settings["message_size_limit"]) >= 256 * 1024


def test_the_api_serves_the_probe_paths_the_manifests_use() -> None:
    # The paths are the admin application's own GET routes, read from its router.
    app = create_app(cast(BridgeParts, object()))
    served = {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }
    assert {"/healthz", "/readyz"} <= served
