"""HookBridge itself, as ``python -m bridge.cli run`` with a config written per run."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from bench.peers.base import Launch, Peer, Target

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


OVERRIDES: dict[str, Any] = {
    # Short retries so the failure scenarios finish within the run.
    "retry": {"schedule": ["200ms", "1s", "2s", "5s", "10s"], "jitter": 0.2},
    # The receiver listens on 127.0.0.1.
    "security": {"allow_private_targets": True},
    # The peers announce no presence: the counts compare the devices' events alone.
    "presence": {"announce_first_seen": False},
}
"""What the bench changes in HookBridge's defaults; everything else is default."""

TUNED: dict[str, Any] = {"max_in_flight": 64, "timeout": "10s"}
"""The tuned set's subscription settings (the configuration first measured)."""


def describe() -> str:
    """The overrides in words, for the results page."""
    return (
        "HookBridge: SQLite store (WAL, synchronous NORMAL, the default), signed JSON bodies; "
        "overrides: retry.schedule 200ms/1s/2s/5s/10s, security.allow_private_targets, "
        "presence.announce_first_seen false; "
        "wiring only: broker URL, client id, store file, receiver URL and secret, admin API off; "
        f"tuned set adds max_in_flight {TUNED['max_in_flight']}"
    )


def store_file(target: Target) -> Path:
    return target.workdir / "hookbridge.db"


def config(target: Target, *, client_id: str = "hookbridge-bench") -> dict[str, Any]:
    """The bench's configuration: defaults, plus :data:`OVERRIDES` and the run's wiring."""
    store = target.extra.get("store_url") or f"sqlite:///{store_file(target)}"
    mqtt: dict[str, Any] = {"url": f"mqtt://127.0.0.1:{target.broker_port}", "client_id": client_id}
    if target.extra.get("shared_group"):
        mqtt["shared_group"] = target.extra["shared_group"]
    subscription: dict[str, Any] = {
        "name": "receiver",
        "url": target.receiver_url,
        "secret": SECRET,
    }
    if target.max_in_flight is not None:
        subscription.update(TUNED, max_in_flight=target.max_in_flight)
    if target.extra.get("ordered"):
        subscription["ordered"] = True
    return {
        "mqtt": mqtt,
        "store": {"url": store},
        **OVERRIDES,
        "api": {"listen": None},  # several instances run side by side in one scenario
        "subscriptions": [subscription],
    }


class HookBridge(Peer):
    name = "hookbridge"
    sends_ids = True

    def __init__(self, client_id: str = "hookbridge-bench") -> None:
        self.client_id = client_id

    def store_file(self, target: Target) -> Path | None:
        return None if target.extra.get("store_url") else store_file(target)

    def launch(self, target: Target) -> Launch:
        path = target.workdir / f"{self.client_id}.yaml"
        path.write_text(yaml.safe_dump(config(target, client_id=self.client_id)))
        argv = [sys.executable, "-m", "bridge.cli", "run", "-c", str(path), "--log-level", "info"]
        return Launch(argv=argv, env={"PYTHONUNBUFFERED": "1"}, ready_marker="connected to broker")

    def version(self) -> str:
        return version("hookbridge")
