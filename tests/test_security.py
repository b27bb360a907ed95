"""No one gets in: the SSRF guard through a running bridge, TLS verification, secrets never leak."""

from __future__ import annotations

import json
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from bridge.config import parse_config
from bridge.core.events import Event
from bridge.delivery.send import Sender
from tests.conftest import bridge_config, running_bridge
from tests.support.cli import run_cli
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.process import BridgeProcess
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until

# -- SSRF through the running bridge ----------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_private_target_is_refused_by_the_running_bridge(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path, host: str
) -> None:
    """A name (``localhost``) is checked on the address it resolves to, not on its spelling."""
    url = receiver.url.replace("127.0.0.1", host)
    config = bridge_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": url}],
        security={"allow_private_targets": False},
    )
    with capture_logs() as logs:
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                device.publish_all([("devices/d1/events", {"type": "session.started"})])
            await wait_until(lambda: any(e["event"] == "attempt failed" for e in logs), timeout=15)
    failures = [e for e in logs if e["event"] == "attempt failed"]
    assert "security.allow_private_targets" in str(failures[0]["error"])
    # A refused target is a warning naming the key that allows it, not just a failed attempt.
    refused = [e for e in logs if e["event"].startswith("delivery refused")]
    assert refused, logs
    assert refused[0]["log_level"] == "warning"
    assert refused[0]["allowed_by"] == "security.allow_private_targets: true"
    assert receiver.requests == []


# -- TLS verification --------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def _tls_receiver(cert: Path, key: Path) -> tuple[web.AppRunner, int, list[bytes]]:
    got: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner, port, got


def _event() -> Event:
    return Event("evt_tls", "bridge.test", datetime.now(UTC), "mqtt://test", {"device_id": "d"})


async def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    runner, port, got = await _tls_receiver(cert, key)
    url = f"https://localhost:{port}/hook"
    variants: dict[str, dict[str, Any]] = {
        "default": {},
        "ca_file": {"ca_file": str(cert)},
        "no_verify": {"verify_tls": False},
    }
    settings = parse_config(
        {
            "security": {"allow_private_targets": True},
            "subscriptions": [{"name": n, "url": url, **extra} for n, extra in variants.items()],
        }
    )
    sender = Sender(settings, user_agent="hookbridge/test")
    outcomes: dict[str, Any] = {}
    try:
        with capture_logs() as logs:
            await sender.start()
            for i, sub in enumerate(settings.subscriptions):
                outcomes[sub.name] = await sender.attempt(
                    sub, _event(), delivery_id=f"dlv_{i}", attempt=1
                )
    finally:
        await sender.close()
        await runner.cleanup()
    assert outcomes["default"].outcome == "failed"
    assert "certificate" in (outcomes["default"].error or "").lower()
    assert outcomes["ca_file"].outcome == "delivered"
    assert outcomes["no_verify"].outcome == "delivered"
    assert len(got) == 2
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert any("no_verify" in json.dumps(e, default=str) for e in warnings), warnings


# -- secrets never leak --------------------------------------------------------------

WEBHOOK_SECRET = "whsec_LEAKCHECKwebhook0000000001"
MQTT_PASSWORD = "mqtt-LEAKCHECK-password-0002"
HEADER_TOKEN = "tok-LEAKCHECK-header-0003"
ADMIN_TOKEN = "adm-LEAKCHECK-admin-0004"
SECRETS = (WEBHOOK_SECRET, MQTT_PASSWORD, HEADER_TOKEN, ADMIN_TOKEN)


def _cli(*args: str) -> str:
    done = run_cli(*args)
    return done.stdout + done.stderr


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret"


async def test_secrets_never_appear_in_output_logs_or_api_answers(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # A receiver that fails and echoes what it got, headers included: the
    # response excerpt is kept and logged, so an echo must not leak either.
    def echo(request: Any, _n: int) -> Answer:
        return Answer(500, body=json.dumps(request.headers).encode())

    receiver = Receiver(echo)
    await receiver.start()
    api_port = free_port()
    config = bridge_config(
        mosquitto,
        tmp_path,
        [
            {
                "name": "crm",
                "url": receiver.url,
                "secret": WEBHOOK_SECRET,
                "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"},
            }
        ],
        mqtt={"username": "bridge", "password": MQTT_PASSWORD},
        api={"listen": f"127.0.0.1:{api_port}", "token": ADMIN_TOKEN},
    )
    bridge = BridgeProcess(config, tmp_path)
    outputs: dict[str, str] = {}
    try:
        outputs["check-config"] = _cli("check-config", str(bridge.config_path))
        bad = tmp_path / "bad.yaml"
        bad.write_text(bridge.config_path.read_text() + f"extra_key: {WEBHOOK_SECRET}\n")
        outputs["check-config bad"] = _cli("check-config", str(bad))
        bridge.start("--log-level", "debug")
        bridge.wait_subscribed()
        with Publisher(mosquitto.port) as device:
            device.publish_all([("devices/d1/events", {"type": "session.started", "id": "x"})])
        await wait_until(lambda: len(receiver.requests) >= 2, timeout=20, message="retries")
        # What reached the receiver is signed with the secret, and carries the header.
        assert receiver.requests[0].headers["authorization"] == f"Bearer {HEADER_TOKEN}"
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        base = f"http://127.0.0.1:{api_port}"
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: _reachable(http, f"{base}/healthz"), timeout=15)
            for path in (
                "/api/subscriptions",
                "/api/deliveries",
                "/api/stats",
                "/api/rejected",
                "/metrics",
                "/readyz",
                "/api/openapi.json",
                "/dashboard",
            ):
                async with http.get(base + path, headers=headers) as response:
                    outputs[f"GET {path}"] = await response.text()
            async with http.get(f"{base}/api/deliveries", headers=headers) as response:
                listed = await response.json()
            for item in _items(listed)[:3]:
                async with http.get(f"{base}/api/deliveries/{item['id']}", headers=headers) as r:
                    outputs[f"GET delivery {item['id']}"] = await r.text()
            async with http.get(f"{base}/api/subscriptions", headers={}) as response:
                outputs["GET without token"] = await response.text()
                assert response.status == 401
        assert await _stop(bridge) == 0
        outputs["bridge log"] = bridge.log()
    finally:
        bridge.ensure_stopped()
        await receiver.stop()
    assert "extra_key: Extra inputs are not permitted" in outputs["check-config bad"]
    assert "attempt failed" in outputs["bridge log"]
    for where, text in outputs.items():
        _assert_clean(text, where)


async def _reachable(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _items(listed: Any) -> list[dict[str, Any]]:
    if isinstance(listed, dict):
        for key in ("items", "deliveries", "data"):
            if isinstance(listed.get(key), list):
                return list(listed[key])
        return []
    return list(listed) if isinstance(listed, list) else []


async def _stop(bridge: BridgeProcess) -> int:
    assert bridge.process is not None
    bridge.process.terminate()
    await wait_until(lambda: not bridge.alive(), timeout=30, message="bridge exited")
    return bridge.process.wait(1)
