"""The naive bridge as a peer (the program itself is :mod:`bench.peers.naive`)."""

from __future__ import annotations

import sys
from importlib.metadata import version

from bench.peers.base import Launch, Peer, Target


class Naive(Peer):
    name = "naive"

    def launch(self, target: Target) -> Launch:
        argv = [
            sys.executable,
            "-m",
            "bench.peers.naive",
            "--port",
            str(target.broker_port),
            "--url",
            target.receiver_url,
        ]
        return Launch(argv=argv, env={"PYTHONUNBUFFERED": "1"}, ready_marker="subscribed")

    def version(self) -> str:
        return f"paho-mqtt {version('paho-mqtt')} + urllib"
