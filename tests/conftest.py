"""Shared fixtures: a private mosquitto per test module, real receivers, a bridge in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from bridge.app import Bridge
from bridge.config import Settings, parse_config
from tests.support.mosquitto import AclBroker, Mosquitto, refusing_commands, running_mosquitto
from tests.support.plugins import make_test_plugins_visible
from tests.support.postgres import PostgresDatabase
from tests.support.raw_http import SenderFor, Serve, raw_servers, senders
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

# The example plugin is for tests only: never installed where users run from.
TEST_PLUGIN_PATHS = make_test_plugins_visible()

settings.register_profile(
    "default", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, which it may stop and start."""
    with running_mosquitto(tmp_path) as own:
        yield own


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    """A mosquitto of this test's own that refuses commands until they are allowed."""
    with refusing_commands(tmp_path) as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    """This run's own PostgreSQL database, dropped at the end (one per xdist worker)."""
    database = PostgresDatabase().create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as rcv:
        yield rcv


@pytest.fixture
async def raw_server() -> AsyncIterator[Serve]:
    """Starts hand-written HTTP servers (:mod:`tests.support.raw_http`), stopped after the test."""
    async with raw_servers() as start:
        yield start


@pytest.fixture
async def sender_for() -> AsyncIterator[SenderFor]:
    """Makes the bridge's senders for subscriptions, closed after the test."""
    async with senders() as make:
        yield make


@pytest.fixture
async def failing_receiver() -> AsyncIterator[Receiver]:
    """A receiver answering every request 500."""
    async with receiving(lambda _r, _n: Answer(500)) as rcv:
        yield rcv


def crm_subscription(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    """Subscription ``crm``: every event to ``receiver``, signed with ``SECRET``."""
    return {"name": "crm", "url": receiver.url, "secret": SECRET, **extra}


def pipe_subscription(receiver: Receiver, name: str, **extra: Any) -> dict[str, Any]:
    """Pipe subscription ``name`` to ``receiver``: its answers go back over MQTT, where
    ``extra`` (``reply_topic``, ``response_topics``, ...) says."""
    return {"name": name, "url": receiver.url, "mode": "pipe", **extra}


def bridge_config(
    broker: Mosquitto,
    tmp_path: Path,
    subscriptions: list[dict[str, Any]],
    **overrides: Any,
) -> dict[str, Any]:
    """A config document for a test bridge: private broker, own SQLite file, fast retries."""
    doc: dict[str, Any] = {
        "mqtt": {
            "url": broker.url,
            "client_id": f"hb-test-{tmp_path.name}",
            "session_expiry": "1h",
        },
        "store": {"url": f"sqlite:///{tmp_path}/hookbridge.db"},
        "retry": {"schedule": ["50ms", "100ms", "200ms"], "jitter": 0.0},
        "security": {"allow_private_targets": True},
        "api": {"listen": None},
        # Tests count what their receivers get: a device's first event announces
        # nothing here. The announcement itself is tested where it is the point.
        "presence": {"announce_first_seen": False},
        "subscriptions": subscriptions,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


@contextlib.asynccontextmanager
async def running_bridge(config: dict[str, Any] | Settings) -> AsyncIterator[Bridge]:
    """Run a bridge in this event loop until the block ends; it must stop cleanly."""
    settings = config if isinstance(config, Settings) else parse_config(config)
    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run(grace=2.0), name="bridge-under-test")
    try:
        await wait_until(
            lambda: bridge.ingest.subscribed or task.done(),
            timeout=15,
            message="bridge subscribed at the broker",
        )
        if task.done():
            task.result()
        yield bridge
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 20)
