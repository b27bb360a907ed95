"""The dashboard's inbound panel in headless Chromium against a running bridge.

A private mosquitto whose ACL refuses ``devices/+/commands`` makes a command
with a short ``max_age`` go dead; once the ACL allows it, the panel's Replay
button publishes it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

from bridge.core.signing import sign
from bridge.store.outbox import OutboxStatus
from tests.conftest import SECRET, running_bridge
from tests.support.admin import TOKEN, admin_config, api_url
from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.publisher import Publisher
from tests.support.system_deps import find
from tests.support.waiting import wait_until
from tests.test_dashboard import CHROMIUM_ARGS

INBOUND = [
    {
        "name": "helpdesk",
        "path": "/inbound/helpdesk",
        "secret": SECRET,
        "topic": "devices/{body.device_id}/commands",
        "allow_topics": ["devices/+/commands"],
        "max_age": "1s",
    }
]
REFUSING = "topic read #\ntopic readwrite hookbridge/#\n"
ALLOWING = REFUSING + "topic write devices/+/commands\n"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    with running_mosquitto(tmp_path, acl=REFUSING) as broker:
        yield broker, tmp_path / "acl"


async def test_the_inbound_panel_shows_a_dead_command_and_replays_it(
    acl_broker: tuple[Mosquitto, Path], tmp_path: Path
) -> None:
    chromium = find("chromium")
    assert chromium is not None, "chromium is not installed (make test installs it)"
    broker, acl = acl_broker
    config = admin_config(broker, tmp_path, [], inbound=INBOUND)
    async with running_bridge(config) as bridge, aiohttp.ClientSession() as session:
        body = json.dumps({"device_id": "dev-5", "do": "unlock"}).encode()
        stamp = int(time.time())
        headers = {
            "webhook-id": "msg-dash-1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, "msg-dash-1", stamp, body),
        }
        url = api_url(config) + "/inbound/helpdesk"
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 202
            message_id = (await response.json())["id"]

        async def status_is(wanted: OutboxStatus) -> bool:
            message = await bridge.store.get_outbox(message_id)
            return message is not None and message.status is wanted

        await wait_until(lambda: status_is(OutboxStatus.DEAD), timeout=20, message="dead")
        acl.write_text(ALLOWING)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGHUP)

        with Publisher(broker.port) as device:
            device.subscribe("devices/+/commands")
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 900})
                    await page.goto(api_url(config) + "/dashboard")
                    await page.fill("#token", TOKEN)
                    await page.click("#login-form button")
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
                finally:
                    await browser.close()
