"""``check-config`` refuses what ``run`` refuses, each problem with its place, and warns.

Every broken file goes through the real CLI (``hookbridge check-config -c``);
the same file makes ``hookbridge run`` stop with the same lines, and a running
bridge's ``POST /api/reload`` refuse it. Operator commands need only the
``api`` section of a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.admin import Admin, admin_config, api_url
from tests.support.cli import (
    check_config_refuses,
    hookbridge,
    run_cli,
    run_refuses_like_check_config,
)
from tests.support.mosquitto import Mosquitto
from tests.support.process import BridgeProcess
from tests.support.receiver import Receiver

HIDDEN = "Zm9vYmFyYmF6cXV4cXV1eA"  # part of secrets below; never printed

# A URL the private-target warning does not concern.
PUBLIC = "https://hooks.example.com/in"


def _sub(**extra: Any) -> dict[str, Any]:
    return {"name": "crm", "url": PUBLIC, "secret": SECRET, **extra}


def _rule(**extra: Any) -> dict[str, Any]:
    return {"topic": "site/{device_id}/{action}", "type": "session.started", **extra}


BROKEN: list[tuple[str, object, list[str]]] = [
    (
        "rule maps to an unknown type",
        {
            "rules": [
                _rule(type={"from": "topic.action", "map": {"go": "session.strated"}}),
            ]
        },
        [
            "rules[0].type.map.go: 'session.strated' is not in the event catalogue "
            "(did you mean 'session.started'?)"
        ],
    ),
    (
        "rule with a JMESPath syntax error",
        {"rules": [_rule(data={"user": "payload.[["})]},
        ["rules[0].data.user: not a valid JMESPath expression"],
    ),
    (
        "two broken rules are both reported",
        {"rules": [_rule(type="nope.type"), _rule(id="a ==")]},
        ["rules[0].type: 'nope.type' is not in the event catalogue", "rules[1].id: not a valid"],
    ),
    (
        "secret with invalid base64",
        {"subscriptions": [_sub(secret=f"whsec_{HIDDEN}*!")]},
        ["subscriptions[0].secret: a whsec_ secret must be valid base64 after its prefix"],
    ),
    (
        "secret too short",
        {"subscriptions": [_sub(secret="whsec_c2hvcnQ=")]},
        ["subscriptions[0].secret: a whsec_ secret must decode to at least 8 bytes"],
    ),
    (
        "one of two rotated secrets broken",
        {"subscriptions": [_sub(secret=[SECRET, f"whsec_{HIDDEN}%%"])]},
        ["subscriptions[0].secret[1]: a whsec_ secret must be valid base64"],
    ),
    (
        "URL with a space",
        {"subscriptions": [_sub(url="https://hooks.example.com/my hook")]},
        ["subscriptions[0].url: must be an http:// or https:// URL without spaces"],
    ),
    (
        "URL without a host",
        {"subscriptions": [_sub(url="https:///in")]},
        ["subscriptions[0].url: must name a host"],
    ),
    (
        "header value ending in a newline, as from a YAML | block",
        "subscriptions:\n"
        f"  - name: crm\n    url: {PUBLIC}\n"
        "    headers:\n      X-Api-Key: |\n        key-" + HIDDEN + "\n",
        [
            "subscriptions[0].headers.X-Api-Key: ends with a newline; "
            "in YAML write `>-` or `|-` instead of `>` or `|`"
        ],
    ),
    (
        "control character in a bearer token",
        {"subscriptions": [_sub(auth={"type": "bearer", "token": f"tok{HIDDEN}\x07"})]},
        ["subscriptions[0].auth.token: contains the control character U+0007"],
    ),
    (
        "newline in a basic auth password and an OAuth2 client secret",
        {
            "subscriptions": [
                _sub(auth={"type": "basic", "username": "u", "password": f"{HIDDEN}\n"}),
                _sub(
                    name="erp",
                    auth={
                        "type": "oauth2_client_credentials",
                        "token_url": "https://auth.example.com/token",
                        "client_id": "bridge",
                        "client_secret": f"{HIDDEN}\r\n",
                    },
                ),
            ]
        },
        [
            "subscriptions[0].auth.password: ends with a newline",
            "subscriptions[1].auth.client_secret: ends with a newline",
        ],
    ),
    (
        "newline in the API token and an inbound secret",
        {
            "api": {"token": f"adm_{HIDDEN}\n"},
            "inbound": [
                {
                    "name": "cmd",
                    "path": "/in/cmd",
                    "secret": f"{HIDDEN}\n",
                    "topic": "cmd/x",
                    "allow_topics": ["cmd/#"],
                }
            ],
        },
        ["api.token: ends with a newline", "inbound[0].secret: ends with a newline"],
    ),
    (
        "key typo",
        {"subscriptions": [_sub(secrte=SECRET)]},
        [
            "subscriptions[0].secrte: Extra inputs are not permitted (did you mean 'secret'?)",
        ],
    ),
    (
        "key typo inside auth",
        {"subscriptions": [_sub(auth={"type": "bearer", "token": "t", "tokn": "x"})]},
        ["subscriptions[0].auth.tokn: Extra inputs are not permitted (did you mean 'token'?)"],
    ),
    (
        "certificate files that do not exist",
        {
            "mqtt": {"tls": {"ca_file": "/nonexistent/broker-ca.pem"}},
            "subscriptions": [_sub(client_cert="/nonexistent/client.pem")],
        },
        [
            "mqtt.tls.ca_file: no such file: /nonexistent/broker-ca.pem",
            "subscriptions[0].client_cert: no such file: /nonexistent/client.pem",
        ],
    ),
    (
        "inbound path the admin API serves, a repeated path, a secret that is not base64",
        {
            "inbound": [
                {
                    "name": name,
                    "path": path,
                    "secret": secret,
                    "topic": "cmd/x",
                    "allow_topics": ["cmd/#"],
                }
                for name, path, secret in (
                    ("a", "/api/cmd", SECRET),
                    ("b", "/in/cmd", SECRET),
                    ("c", "/in/cmd", f"whsec_{HIDDEN}!"),
                )
            ]
        },
        [
            "inbound[0].path: is served by the admin API",
            "inbound[2].path: '/in/cmd' is already the path of inbound[1]",
            "inbound[2].secret: a whsec_ secret must be valid base64",
        ],
    ),
    (
        "batching where it cannot batch",
        {
            "subscriptions": [
                _sub(name="pipe", mode="pipe", batch={"max_events": 10}),
                _sub(name="xml", format="xml", batch={}),
                _sub(name="form", format="form", batch={}),
                _sub(name="binary", format="cloudevents-binary", batch={}),
                _sub(name="bounds", batch={"max_events": 0, "max_bytes": "10B", "extra": 1}),
            ]
        },
        [
            "subscriptions[0]: batch cannot be used with mode 'pipe'",
            "subscriptions[1]: batch cannot be used with format 'xml'",
            "subscriptions[2]: batch cannot be used with format 'form'",
            "subscriptions[3]: batch cannot be used with format 'cloudevents-binary'",
            "subscriptions[4].batch.max_events:",
            "subscriptions[4].batch.max_bytes:",
            "subscriptions[4].batch.extra:",
        ],
    ),
    (
        "duplicate subscription name",
        {"subscriptions": [_sub(), _sub(url="https://other.example.com/")]},
        ["subscriptions[1].name: 'crm' is already the name of subscriptions[0]"],
    ),
]


def _write(path: Path, document: object) -> Path:
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("document", "expected"), [(d, e) for _, d, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_check_config_refuses_with_place_and_reason(
    tmp_path: Path, document: object, expected: list[str]
) -> None:
    path = _write(tmp_path / "hookbridge.yaml", document)
    done = check_config_refuses(path, expected)
    assert HIDDEN not in done.stdout + done.stderr


def test_run_refuses_the_same_file_with_the_same_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "hookbridge.yaml",
        {"rules": [_rule(type="nope.type"), _rule(data={"user": "payload.[["})]},
    )
    run_refuses_like_check_config(path, "rules", problems=2)


def test_missing_variable_is_one_problem_naming_it(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "hookbridge.yaml",
        "subscriptions:\n"
        f"  - name: crm\n    url: {PUBLIC}\n    secret: ${{HB_SURELY_UNSET_SECRET}}\n",
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 2
    assert "configuration has 1 problem" in done.stderr, done.stderr
    assert (
        "subscriptions[0].secret: environment variable HB_SURELY_UNSET_SECRET is not set"
        in done.stderr
    )
    assert "at least 8" not in done.stderr


def test_empty_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "hookbridge.yaml"
    path.write_text("# nothing here yet\n")
    done = run_cli("check-config", str(path))
    assert done.returncode == 2
    assert "the file is empty" in done.stderr


def test_warnings_are_printed_and_exit_zero(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "hookbridge.yaml",
        {
            "subscriptions": [
                {
                    "name": "local",
                    "url": "http://127.0.0.1:9000/hook?token=q-secret-1",
                    "events": ["sesion.*", "device.*"],
                    "secret": f"plain-{HIDDEN}",
                },
                {"name": "lan", "url": "http://10.1.2.3/hook", "secret": SECRET},
            ]
        },
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "valid, 4 warning(s)" in done.stdout
    err = done.stderr
    assert (
        "warning: subscriptions[0].events[0]: 'sesion.*' matches no event type "
        "(did you mean 'session.*'?)" in err
    )
    assert "warning: subscriptions[0].url: 127.0.0.1 is a loopback address" in err
    assert "warning: subscriptions[1].url: 10.1.2.3 is a private address" in err
    assert "security.allow_private_targets: true" in err
    assert "warning: subscriptions[0].secret: not in the form whsec_<base64>" in err
    # The summary redacts what a URL carries in its query.
    assert "127.0.0.1:9000/hook?***" in done.stdout
    assert "q-secret-1" not in done.stdout + err
    assert HIDDEN not in done.stdout + err

    # With the guard off, the private targets are no longer worth a warning.
    document = yaml.safe_load(path.read_text())
    document["security"] = {"allow_private_targets": True}
    _write(path, document)
    done = run_cli("check-config", str(path))
    assert done.returncode == 0
    assert "is a loopback address" not in done.stderr
    assert "is a private address" not in done.stderr


async def test_reload_refuses_what_check_config_refuses(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    path = _write(tmp_path / "hookbridge.yaml", config)
    admin = Admin(api_url(config))
    try:
        async with running_bridge(config) as bridge:
            bridge.config_path = path
            broken = {**config, "rules": [_rule(type="nope.type")]}
            _write(path, broken)
            status, body = await admin.post("/api/reload")
            assert status == 400, body
            assert "rules[0].type: 'nope.type' is not in the event catalogue" in body["problems"]
            code, _out, err = await hookbridge("check-config", str(path))
            assert code == 2
            assert "  rules[0].type: 'nope.type' is not in the event catalogue" in err.splitlines()
    finally:
        await admin.close()


async def test_operator_commands_need_only_the_api_section(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    operator = tmp_path / "operator.yaml"
    # The operator's copy of the file: webhook secrets come from variables unset here.
    _write(
        operator,
        "api:\n"
        f"  listen: {config['api']['listen']}\n"
        "  token: ${HB_TEST_ADMIN_TOKEN}\n"
        "subscriptions:\n"
        f"  - name: crm\n    url: {receiver.url}\n    secret: ${{HB_SURELY_UNSET_SECRET}}\n",
    )
    env = {"HB_TEST_ADMIN_TOKEN": config["api"]["token"]}
    async with running_bridge(config):
        code, out, err = await hookbridge(
            "subscriptions", "list", "--json", "-c", str(operator), env=env
        )
    assert code == 0, err
    assert '"crm"' in out
    # The api section itself is still interpolated and checked.
    missing = run_cli("subscriptions", "list", "-c", str(operator))
    assert missing.returncode == 1
    assert "api.token: environment variable HB_TEST_ADMIN_TOKEN is not set" in missing.stderr


def test_run_logs_the_warnings_when_it_starts(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = bridge_config(
        mosquitto,
        tmp_path,
        [{"name": "local", "url": "http://127.0.0.1:9/hook", "events": ["sesion.*"]}],
        security={"allow_private_targets": False},
    )
    bridge = BridgeProcess(config, tmp_path)
    try:
        bridge.start()
        bridge.wait_subscribed()
        log = bridge.run_log()
    finally:
        bridge.ensure_stopped()
    warnings = [line for line in log.splitlines() if "configuration warning" in line]
    assert any("warning" in line.split("configuration warning")[0] for line in warnings), log
    assert any("'sesion.*' matches no event type" in line for line in warnings), log
    assert any("security.allow_private_targets" in line for line in warnings), log
