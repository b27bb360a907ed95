"""The dashboard's freshness panel, and a pipe reply in its inbound panel, in headless
Chromium against a running bridge with a real broker and receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.store.outbox import OutboxStatus
from tests.conftest import pipe_subscription, running_bridge
from tests.support.admin import admin_client, admin_config
from tests.support.dashboard import dashboard_page
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, receiving
from tests.support.waiting import wait_until


def _answer(_request: Any, _n: int) -> Answer:
    return Answer(200, body=b"ack", headers={"Content-Type": "text/plain"})


async def test_the_freshness_panel_shows_each_subscriptions_quantiles(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(_answer) as receiver:
        subs = [
            pipe_subscription(
                receiver,
                "rr",
                events=["device.online"],
                response_topics=["replies/{data.device_id}"],
            ),
            {"name": "quiet", "url": receiver.url, "events": ["session.started"]},
        ]
        config = admin_config(mosquitto, tmp_path, subs)
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            with Publisher(mosquitto.port) as device:
                device.subscribe("replies/#")
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.ResponseTopic = "replies/dev-f"
                properties.CorrelationData = b"f-1"
                device.client.publish(
                    "devices/dev-f/status", "online", qos=1, properties=properties
                ).wait_for_publish(10)
                await wait_until(lambda: bool(device.received), timeout=20, message="reply")

            async def reply_published() -> bool:
                page, _ = await bridge.store.list_outbox(
                    status=OutboxStatus.PUBLISHED, source="rr", cursor=None, limit=5
                )
                return bool(page)

            await wait_until(reply_published, timeout=10, message="reply marked published")
            status, body = await admin.get("/api/freshness")
            assert status == 200
            rows = {row["name"]: row for row in body["subscriptions"]}
            assert rows["rr"]["total"]["count"] == 1
            assert rows["rr"]["total"]["p50"] is not None
            assert rows["quiet"]["total"] == {"count": 0, "p50": None, "p99": None}
            async with dashboard_page(config) as page:
                row = page.locator("#freshness tr[data-freshness='rr']")
                await row.wait_for(timeout=10_000)
                # Since start: the one answered request. (Recent counts only what
                # came since an earlier look, here the API call above: none.)
                p50 = await row.locator("td.total-p50").inner_text()
                assert p50.endswith(("ms", " s")), p50
                assert (await row.locator("td.count").inner_text()) == "0"
                quiet = page.locator("#freshness tr[data-freshness='quiet']")
                assert (await quiet.locator("td.total-p50").inner_text()) == "\N{EN DASH}"
                # The reply shows in the inbound panel, marked as one.
                reply = page.locator("#inbound tr", has_text="replies/dev-f")
                await reply.wait_for(timeout=10_000)
                await reply.locator(".pill.reply").wait_for(timeout=10_000)
                assert "published" in await reply.inner_text()
