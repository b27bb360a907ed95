"""mqttwarn from PyPI, in its own virtualenv in the bench cache, with its HTTP service.

mqttwarn subscribes with QoS 1 (paho's automatic acknowledgement on
receipt), queues each message for its worker thread, which POSTs it with
``urllib`` (one connection per request). The configuration is written per run.
"""

from __future__ import annotations

import subprocess
import venv

from bench.peers.base import CACHE, Launch, Peer, PeerUnavailable, Target

VENV = CACHE / "mqttwarn-venv"
BINARY = VENV / "bin" / "mqttwarn"


def ini(target: Target) -> str:
    return f"""[defaults]
hostname = 127.0.0.1
port = {target.broker_port}
clientid = mqttwarn-bench
cleansession = True
loglevel = INFO
logfile = stream://sys.stderr
num_workers = 1
launch = http_urllib
; published (retained) once the subscriptions are made: the harness waits for it
lwt = bench/mqttwarn/status
lwt_alive = online
lwt_dead = offline

[config:http_urllib]
timeout = 10
targets = {{
    'receiver': ['post', '{target.receiver_url}', None, None, True],
    }}

[devices/+/events]
qos = 1
targets = http_urllib:receiver
"""


class MqttWarn(Peer):
    name = "mqttwarn"

    def install(self) -> None:
        if BINARY.exists():
            return
        try:
            venv.create(VENV, with_pip=True, clear=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PeerUnavailable(f"cannot create a virtualenv: {exc}") from exc
        done = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "mqttwarn"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not BINARY.exists():
            raise PeerUnavailable(f"pip install mqttwarn failed: {done.stderr[-400:]}")

    def launch(self, target: Target) -> Launch:
        path = target.workdir / "mqttwarn.ini"
        path.write_text(ini(target))
        return Launch(
            argv=[str(BINARY)],
            env={"MQTTWARNINI": str(path), "PYTHONUNBUFFERED": "1"},
            ready_marker="",
            ready_topic="bench/mqttwarn/status",
            cwd=target.workdir,
        )

    def version(self) -> str:
        done = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", "import mqttwarn; print(mqttwarn.__version__)"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return f"mqttwarn {done.stdout.strip() or '?'}"
