"""The dashboard page in headless Chromium against a running bridge: token, deliveries, Retry."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import crm_subscription, running_bridge
from tests.support.admin import admin_config
from tests.support.dashboard import dashboard_page, save_screenshot
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until


async def test_dashboard_shows_a_delivery_and_retry_sends_it_again(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/dev-42/events", {"type": "session.started", "id": "d-1"}),
                    ("devices/dev-42/events", b"{broken"),
                ]
            )
        await wait_until(lambda: len(receiver.requests) == 1)

        async def recorded() -> bool:
            return await bridge.store.queue_depth("crm") == 0

        await wait_until(recorded, message="delivery recorded")
        page_, _ = await bridge.store.list_deliveries(
            subscription="crm", status=None, since=None, until=None, cursor=None, limit=5
        )
        delivery = page_[0]

        async with dashboard_page(config) as page:
            row = page.locator(f"#deliveries tr[data-delivery='{delivery.id}']")
            await row.wait_for(timeout=10_000)
            assert "delivered" in await row.inner_text()
            await page.locator("#subscriptions td", has_text="crm").first.wait_for()
            await page.locator("#rejected td", has_text="invalid_json").first.wait_for()
            # Token kept for the session: a reload does not ask again.
            await page.reload()
            await row.wait_for(timeout=10_000)
            assert await page.locator("#login").is_hidden()

            await row.locator("button.retry").click()
            await wait_until(lambda: len(receiver.requests) == 2, message="retried by click")
            first, second = receiver.requests
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            assert second.headers["hookbridge-delivery-id"] == delivery.id
            await page.locator("#message", has_text="retrying").wait_for()
            # Let the chart gather two samples before the picture is taken.
            await page.locator("#rate", has_text="delivered/s").wait_for(timeout=10_000)
            await save_screenshot(page, "dashboard.png")


async def test_a_waiting_delivery_shows_its_next_attempt_and_goes_now(
    mosquitto: Mosquitto, failing_receiver: Receiver, tmp_path: Path
) -> None:
    sub = {"name": "crm", "url": failing_receiver.url, "circuit": {"failures": 100}}
    config = admin_config(mosquitto, tmp_path, [sub], retry={"schedule": ["1h"], "jitter": 0.0})
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all([("devices/dev-7/events", {"type": "session.started", "id": "w-1"})])

        async def waiting() -> bool:
            page_, _ = await bridge.store.list_deliveries(
                subscription="crm", status=None, since=None, until=None, cursor=None, limit=5
            )
            return bool(page_) and page_[0].attempts == 1

        await wait_until(waiting, message="first attempt recorded")
        (delivery,), _ = await bridge.store.list_deliveries(
            subscription="crm", status=None, since=None, until=None, cursor=None, limit=5
        )
        async with dashboard_page(config) as page:
            row = page.locator(f"#deliveries tr[data-delivery='{delivery.id}']")
            await row.wait_for(timeout=10_000)
            assert any(c.isdigit() for c in await row.locator("td.next").inner_text())
            await row.locator("button.send-now").click()
            await wait_until(lambda: len(failing_receiver.requests) == 2, message="sent now")
            await page.locator("#message", has_text="sending now").wait_for()
            await page.locator("#subscriptions button.flush").click()
            await page.locator("#message", has_text="pending deliveries due now").wait_for()
