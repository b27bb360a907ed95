"""The SSRF guard through an explicit proxy: the proxy is trusted, the target is judged.

A real forward proxy on 127.0.0.1, named by host name (``localhost``), with
the guard on (``allow_private_targets: false``). A public target is sent
through it (the proxy forwards it to the local receiver that stands for that
host); private targets, given as an address or as a name that resolves to
one, are refused before the proxy is asked anything.
"""

from __future__ import annotations

from pathlib import Path

from bridge.app import Bridge
from bridge.store.rows import Delivery
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.proxy import ForwardProxy
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

PUBLIC = "93.184.215.14:8080"  # a global address; the proxy routes it to the local receiver


async def _deliveries(bridge: Bridge) -> dict[str, Delivery]:
    page, _ = await bridge.store.list_deliveries(
        subscription=None, status=None, since=None, until=None, cursor=None, limit=50
    )
    return {d.subscription: d for d in page}


async def test_a_private_proxy_by_name_carries_public_targets_and_private_ones_are_refused(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    proxy = ForwardProxy({PUBLIC: f"http://127.0.0.1:{receiver.port}"})
    await proxy.start()
    via = f"http://localhost:{proxy.port}"
    subscriptions = [
        {"name": "public", "url": f"http://{PUBLIC}/hook", "secret": SECRET, "proxy": via},
        {"name": "literal", "url": "http://127.0.0.2:9/hook", "secret": SECRET, "proxy": via},
        {"name": "named", "url": "http://localhost:9/hook", "secret": SECRET, "proxy": via},
        {
            "name": "oauth",
            "url": f"http://{PUBLIC}/oauth",
            "proxy": via,
            # The token URL goes through the proxy too, and is judged the same way.
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "http://127.0.0.3:9/token",
                "client_id": "bridge",
                "client_secret": "s3cret-value",
            },
        },
    ]
    config = bridge_config(
        mosquitto,
        tmp_path,
        subscriptions,
        security={"allow_private_targets": False},
        retry={"schedule": ["1h"], "jitter": 0.0},
    )
    try:
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [("devices/dev-1/events", {"type": "session.started", "id": "p-1"})]
                )

            async def all_attempted() -> bool:
                found = await _deliveries(bridge)
                return len(found) == 4 and all(d.attempts >= 1 for d in found.values())

            await wait_until(all_attempted, timeout=15, message="one attempt each")
            found = await _deliveries(bridge)
            assert found["public"].status.value == "delivered", found["public"].last_error
            assert len(receiver.requests) == 1
            assert receiver.requests[0].path == "/hook"
            assert proxy.targets == [f"http://{PUBLIC}/hook"]
            literal = found["literal"].last_error or ""
            assert found["literal"].status.value == "pending"
            assert "target 127.0.0.2 is a loopback address" in literal, literal
            named = found["named"].last_error or ""
            assert "localhost behind the proxy" in named, named
            assert "loopback" in named
            oauth = found["oauth"].last_error or ""
            assert "target 127.0.0.3 is a loopback address" in oauth, oauth
    finally:
        await proxy.stop()
