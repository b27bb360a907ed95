"""HookBridge itself, as ``python -m bridge.cli run`` with a config written per run."""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any

import yaml

from bench.peers.base import Launch, Peer, Target

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config(target: Target, *, client_id: str = "hookbridge-bench") -> dict[str, Any]:
    """The bench's configuration: SQLite (WAL, synchronous NORMAL), signed JSON, short retries."""
    store = target.extra.get("store_url") or f"sqlite:///{target.workdir}/hookbridge.db"
    mqtt: dict[str, Any] = {
        "url": f"mqtt://127.0.0.1:{target.broker_port}",
        "client_id": client_id,
        "session_expiry": "1h",
        "receive_maximum": 1000,
    }
    if target.extra.get("shared_group"):
        mqtt["shared_group"] = target.extra["shared_group"]
    return {
        "mqtt": mqtt,
        "store": {"url": store},
        # Short retries so the failure scenarios finish within the run.
        "retry": {"schedule": ["200ms", "1s", "2s", "5s", "10s"], "jitter": 0.2},
        "security": {"allow_private_targets": True},
        "api": {"listen": None},
        "subscriptions": [
            {
                "name": "receiver",
                "url": target.receiver_url,
                "secret": SECRET,
                "max_in_flight": target.max_in_flight,
                "timeout": "10s",
                "circuit": {"failures": 5, "cool_down": "1s"},
            }
        ],
    }


class HookBridge(Peer):
    name = "hookbridge"
    sends_ids = True

    def __init__(self, client_id: str = "hookbridge-bench") -> None:
        self.client_id = client_id

    def launch(self, target: Target) -> Launch:
        path = target.workdir / f"{self.client_id}.yaml"
        path.write_text(yaml.safe_dump(config(target, client_id=self.client_id)))
        argv = [sys.executable, "-m", "bridge.cli", "run", "-c", str(path), "--log-level", "info"]
        return Launch(argv=argv, env={"PYTHONUNBUFFERED": "1"}, ready_marker="connected to broker")

    def version(self) -> str:
        return version("hookbridge")
