"""Node-RED from the npm registry, installed into the bench cache.

The flow is the one a Node-RED user draws: "mqtt in" (QoS 1) → "http
request" (POST, keep-alive on). Node-RED acknowledges a message on receipt
and keeps nothing on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from bench.broker import free_port
from bench.peers.base import CACHE, Launch, Peer, PeerUnavailable, Target

HOME = CACHE / "nodered"
BINARY = HOME / "node_modules" / ".bin" / "node-red"


def flow(target: Target) -> list[dict[str, object]]:
    return [
        {"id": "tab1", "type": "tab", "label": "bench"},
        {
            "id": "broker1",
            "type": "mqtt-broker",
            "name": "bench",
            "broker": "127.0.0.1",
            "port": str(target.broker_port),
            "clientid": "nodered-bench",
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": True,
            "autoConnect": True,
        },
        {
            "id": "in1",
            "type": "mqtt in",
            "z": "tab1",
            "topic": "devices/+/events",
            "qos": "1",
            "datatype": "utf8",
            "broker": "broker1",
            "nl": False,
            "rap": True,
            "inputs": 0,
            "wires": [["post1"]],
        },
        {
            "id": "post1",
            "type": "http request",
            "z": "tab1",
            "method": "POST",
            "ret": "txt",
            "paytoqs": "ignore",
            "url": target.receiver_url,
            "persist": True,
            "senderr": False,
            "headers": [
                {
                    "keyType": "other",
                    "keyValue": "content-type",
                    "valueType": "other",
                    "valueValue": "application/json",
                }
            ],
            "wires": [[]],
        },
    ]


class NodeRed(Peer):
    name = "nodered"

    def install(self) -> None:
        if BINARY.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise PeerUnavailable("npm is not installed")
        HOME.mkdir(parents=True, exist_ok=True)
        (HOME / "package.json").write_text('{"name": "bench-nodered", "private": true}\n')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "node-red"],
            cwd=HOME,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not BINARY.exists():
            raise PeerUnavailable(f"npm install node-red failed: {done.stderr[-400:]}")

    def launch(self, target: Target) -> Launch:
        user_dir = target.workdir / "nodered"
        user_dir.mkdir(parents=True, exist_ok=True)
        flows = user_dir / "flows.json"
        flows.write_text(json.dumps(flow(target), indent=1))
        settings = user_dir / "settings.js"
        settings.write_text(
            "module.exports = { uiHost: '127.0.0.1', flowFile: 'flows.json',"
            " logging: { console: { level: 'info', metrics: false, audit: false } } };\n"
        )
        argv = [
            str(BINARY),
            "--userDir",
            str(user_dir),
            "--settings",
            str(settings),
            "--port",
            str(free_port()),
            str(flows),
        ]
        return Launch(argv=argv, env={}, ready_marker="Connected to broker")

    def version(self) -> str:
        package = HOME / "node_modules" / "node-red" / "package.json"
        try:
            node = subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=False, timeout=10
            ).stdout.strip()
            return f"node-red {json.loads(package.read_text())['version']} (node {node})"
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            return "?"
