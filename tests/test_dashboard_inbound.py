"""The dashboard's inbound panel in headless Chromium against a running bridge.

A private mosquitto whose ACL refuses ``devices/+/commands`` makes a command
with a short ``max_age`` go dead; once the ACL allows it, the panel's Replay
button publishes it.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bridge.store.outbox import OutboxStatus
from tests.conftest import running_bridge
from tests.support.admin import admin_config, api_url
from tests.support.dashboard import dashboard_page
from tests.support.inbound import command_route, signed_request
from tests.support.mosquitto import AclBroker
from tests.support.publisher import Publisher
from tests.support.waiting import wait_until

INBOUND = [command_route("helpdesk", max_age="1s")]


async def test_the_inbound_panel_shows_a_dead_command_and_replays_it(
    acl_broker: AclBroker, tmp_path: Path
) -> None:
    broker = acl_broker.broker
    config = admin_config(broker, tmp_path, [], inbound=INBOUND)
    async with running_bridge(config) as bridge, aiohttp.ClientSession() as session:
        body, headers = signed_request({"device_id": "dev-5", "do": "unlock"}, msg_id="msg-dash-1")
        url = api_url(config) + "/inbound/helpdesk"
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 202
            message_id = (await response.json())["id"]

        async def status_is(wanted: OutboxStatus) -> bool:
            message = await bridge.store.get_outbox(message_id)
            return message is not None and message.status is wanted

        await wait_until(lambda: status_is(OutboxStatus.DEAD), timeout=20, message="dead")
        acl_broker.allow_commands()

        with Publisher(broker.port) as device:
            device.subscribe("devices/+/commands")
            async with dashboard_page(config) as page:
                row = page.locator(f"#inbound tr[data-inbound='{message_id}']")
                await row.wait_for(timeout=10_000)
                text = await row.inner_text()
                assert "dead (too_old)" in text
                assert "devices/dev-5/commands" in text
                assert "0x87" in text

                async def published_by_click() -> bool:
                    # The broker's ACL reload races the click: a refused try dies
                    # again within max_age, and is replayed by the next click.
                    if await status_is(OutboxStatus.PUBLISHED):
                        return True
                    button = row.locator("button.replay")
                    if await status_is(OutboxStatus.DEAD) and await button.count():
                        await button.click()
                    return False

                await wait_until(published_by_click, timeout=30, interval=0.5)
                await wait_until(lambda: bool(device.received), message="command received")
                assert device.received[0].topic == "devices/dev-5/commands"
                await page.locator("#message", has_text="publishing").wait_for()
                await row.locator("text=published").wait_for(timeout=10_000)
