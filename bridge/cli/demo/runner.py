"""``hookbridge demo``: wire the broker, the receiver, the bridge and the simulated devices.

The bridge runs in this process with a throw-away SQLite store; its own
logs are kept to warnings so the screen shows the events. ``--events N``
stops after N verified events and prints a summary; Ctrl-C (or SIGTERM)
stops at any time, cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli.demo.broker import BrokerChoice, DemoBroker
from bridge.cli.demo.receiver import DemoReceiver
from bridge.cli.demo.requester import Requester, pipe_subscription
from bridge.cli.demo.simulator import Simulator
from bridge.cli.keys import generate_secret
from bridge.config import parse_config
from bridge.errors import BridgeError
from bridge.observe.logs import configure_logging

if TYPE_CHECKING:
    from bridge.app import Bridge

__all__ = ["run_demo"]


def _say(line: str = "") -> None:
    print(line, flush=True)


def _header(broker: DemoBroker, receiver: DemoReceiver, store: Path, rate: float) -> None:
    _say("HookBridge demo: everything below runs on this machine, on 127.0.0.1.")
    _say(f"  broker    {broker.kind} at {broker.url}")
    _say(f"  devices   simulated, publishing to devices/<id>/... at {rate:g} messages/s")
    _say(f"  bridge    in this process, MQTT {broker.protocol}, store sqlite:///{store}")
    _say(f"  receiver  {receiver.url}: verifies each webhook-signature, prints each event")
    _say(f"  request   one device asks, {receiver.pipe_url} answers, the answer goes back")
    _say("Ctrl-C stops.")
    _say()


async def _demo(events: int | None, rate: float, choice: BrokerChoice) -> int:
    from bridge.app import Bridge  # the whole service: imported only when the demo runs

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    secret = generate_secret()
    receiver = DemoReceiver(secret, printer=_say, limit=events)
    await receiver.start()
    try:
        async with DemoBroker(choice) as broker:
            with tempfile.TemporaryDirectory(prefix="hookbridge-demo-") as workdir:
                store = Path(workdir) / "demo.db"
                settings = parse_config(
                    {
                        "mqtt": {
                            "url": broker.url,
                            "client_id": "hookbridge-demo",
                            "protocol": broker.protocol,
                            "session_expiry": "1h",
                        },
                        "store": {"url": f"sqlite:///{store}"},
                        "api": {"listen": None},
                        "security": {"allow_private_targets": True},  # the receiver is local
                        "retry": {"schedule": ["1s", "5s", "30s"]},
                        # Devices report their own presence here; heartbeat tracking would
                        # fold a device's first messages into one online state.
                        "presence": {"enabled": False},
                        "subscriptions": [
                            {"name": "demo-receiver", "url": receiver.url, "secret": secret},
                            pipe_subscription(receiver.pipe_url, secret),
                        ],
                    },
                    interpolate=False,
                )
                _header(broker, receiver, store, rate)
                bridge = Bridge(settings)
                return await _run(
                    bridge, broker=broker, receiver=receiver, events=events, rate=rate, stop=stop
                )
    finally:
        await receiver.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    bridge: Bridge,
    *,
    broker: DemoBroker,
    receiver: DemoReceiver,
    events: int | None,
    rate: float,
    stop: asyncio.Event,
) -> int:
    service = asyncio.create_task(bridge.run(grace=2.0), name="demo-bridge")
    devices: asyncio.Task[None] | None = None
    asking: asyncio.Task[str] | None = None
    try:
        async with asyncio.timeout(30):
            while not bridge.ingest.subscribed and not service.done() and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
        if service.done():
            service.result()  # raises what stopped it
        # First one request/response round trip, then the stream of device events.
        requester = Requester(broker.port, protocol=broker.protocol)
        asking = asyncio.create_task(requester.run(), name="request-response")
        stopping = asyncio.create_task(stop.wait(), name="stop-requested")
        await asyncio.wait({asking, stopping, service}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if service.done():
            service.result()
        if asking.done():
            _say(asking.result())  # raises what stopped it
        devices = asyncio.create_task(Simulator(broker.port, rate=rate).run(), name="devices")
        while not stop.is_set():
            if events is not None and receiver.verified >= events:
                break
            if service.done() or devices.done():
                (service if service.done() else devices).result()
                break
            receiver.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receiver.changed.wait(), 0.5)
    finally:
        for task in (devices, asking):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        bridge.stop()
        await asyncio.wait_for(service, 20)
    _say()
    kinds = ", ".join(f"{t} x{n}" for t, n in sorted(receiver.types.items()))
    # Every line marked "signature ok" above is one of these, the answered request included.
    _say(f"{receiver.verified} events received, {receiver.verified} signatures verified.")
    _say(f"types: {kinds or '-'}")
    if receiver.refused:
        _say(f"{receiver.refused} requests REFUSED (bad signature)")
        return 1
    return 0


def run_demo(*, events: int | None, rate: float, broker: str) -> int:
    """Run the demo; returns the exit code."""
    configure_logging("warning")
    choice: BrokerChoice = (
        "embedded" if broker == "embedded" else "mosquitto" if broker == "mosquitto" else "auto"
    )
    try:
        return asyncio.run(_demo(events, rate, choice))
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("error: the bridge did not subscribe at the demo broker in time", file=sys.stderr)
        return 1
