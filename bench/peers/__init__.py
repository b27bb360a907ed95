"""The bridges under test, by name: HookBridge and the peers it is compared with."""

from __future__ import annotations

from bench.peers.base import Peer, PeerUnavailable, Running, Target
from bench.peers.hookbridge import HookBridge
from bench.peers.mqttwarn import MqttWarn
from bench.peers.naive_peer import Naive
from bench.peers.nodered import NodeRed

__all__ = ["PEERS", "Peer", "PeerUnavailable", "Running", "Target"]

PEERS: dict[str, type[Peer]] = {
    "hookbridge": HookBridge,
    "naive": Naive,
    "nodered": NodeRed,
    "mqttwarn": MqttWarn,
}
