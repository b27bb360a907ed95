"""MQTT over TLS against a private mosquitto with test certificates (trustme).

One broker checks server certificates only, another requires a client
certificate (mutual TLS). The bridge delivers through both; a bridge that
trusts another CA never gets a session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import BrokerError, ConfigError
from tests.conftest import bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")  # an IP SAN: hostname checking stays on
    client = ca.issue_cert("hookbridge-test-client")
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    return pki


class TlsMosquitto(Mosquitto):
    """The private broker with its one listener speaking TLS."""

    def __init__(self, workdir: Path, pki: Pki, *, require_certificate: bool) -> None:
        # Certificate options apply to the listener defined before them: the only one.
        # (The base config keeps mosquitto as root when started as root, so it can read
        # the certificates in the test's private directory.)
        super().__init__(
            workdir,
            extra=(
                f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                f"require_certificate {'true' if require_certificate else 'false'}\n"
            ),
        )

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _issue(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def _running(
    factory: pytest.TempPathFactory, pki: Pki, *, require_certificate: bool
) -> Iterator[TlsMosquitto]:
    name = "mtls" if require_certificate else "tls"
    broker = TlsMosquitto(factory.mktemp(name), pki, require_certificate=require_certificate)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsMosquitto]:
    with _running(tmp_path_factory, pki, require_certificate=False) as broker:
        yield broker


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsMosquitto]:
    with _running(tmp_path_factory, pki, require_certificate=True) as broker:
        yield broker


def _tls_publisher(broker: TlsMosquitto, pki: Pki) -> Publisher:
    device = Publisher(broker.port)
    device.client.tls_set(
        ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key)
    )
    return device


async def _delivers(
    broker: TlsMosquitto, pki: Pki, receiver: Receiver, tls: dict[str, Any], tmp: Path
) -> None:
    config = bridge_config(broker, tmp, [crm_subscription(receiver)])
    config["mqtt"]["tls"] = tls
    async with running_bridge(config) as bridge:
        assert bridge.ingest.subscribed
        with _tls_publisher(broker, pki) as device:
            device.publish_all(
                [("devices/dev-tls/events", {"type": "session.started", "id": "m-1", "seq": 1})]
            )
            await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)
    event = receiver.events()[0]
    assert (event["type"], event["data"]["device_id"]) == ("session.started", "dev-tls")


async def test_delivery_over_tls_with_the_ca_file(
    tls_broker: TlsMosquitto, pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    await _delivers(tls_broker, pki, receiver, {"ca_file": str(pki.ca)}, tmp_path)


async def test_delivery_over_mutual_tls_with_a_client_certificate(
    mtls_broker: TlsMosquitto, pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    tls = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    await _delivers(mtls_broker, pki, receiver, tls, tmp_path)


async def test_untrusted_ca_never_connects(
    tls_broker: TlsMosquitto, pki: Pki, tmp_path: Path
) -> None:
    other = _issue(tmp_path / "other-pki")
    config = bridge_config(tls_broker, tmp_path, [])
    config["mqtt"]["tls"] = {"ca_file": str(other.ca)}
    bridge = Bridge(parse_config(config))
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(bridge.run(grace=1.0))
        try:
            await wait_until(
                lambda: sum(e["event"] == "cannot reach broker" for e in logs) >= 2 or task.done(),
                timeout=15,
                message="two failed connection attempts",
            )
            assert not task.done()
            assert not bridge.ingest.subscribed
            assert not bridge.ingest.connected
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 20)
    failure = next(e for e in logs if e["event"] == "cannot reach broker")
    assert "CERTIFICATE_VERIFY_FAILED" in failure["error"] or "certificate" in failure["error"]


def test_missing_tls_file_is_a_broker_error(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    config = {
        "mqtt": {"url": "mqtts://127.0.0.1:8883", "tls": {"ca_file": str(ca_file)}},
        "store": {"url": f"sqlite:///{tmp_path}/hb.db"},
        "api": {"listen": None},
    }
    # The configuration check refuses a file that is not there...
    with pytest.raises(ConfigError) as refused:
        parse_config(config, check_files=True)
    assert refused.value.problems[0].startswith("mqtt.tls.ca_file: no such file")
    # ...and one that goes missing after the check is the broker connection's error.
    ca_file.write_text("not a certificate yet\n")
    settings = parse_config(config, check_files=True)
    ca_file.unlink()
    with pytest.raises(BrokerError, match=r"cannot load the mqtt\.tls files"):
        Bridge(settings)
