"""The webhook settings page in headless Chromium, step by step, as an account's person
uses it: the form (URL, format, SSL verification, a generated secret, event types
from the catalogue, a filter), "Send test" showing the receiver's answer before
saving, save, the subscription's deliveries and health, edit, rotate, delete; and
the dashboard with an account's token, showing its own things only.

The pictures of each step go into tests/artifacts/; with UPDATE_DOC_IMAGES=1 also into
docs/images/, where the documentation shows them (a plain test run leaves the
checkout as it was).
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Page
from standardwebhooks import Webhook

from tests.conftest import crm_subscription, running_bridge
from tests.support.accounts import accounts_config, new_account, subscribe
from tests.support.admin import admin_client
from tests.support.dashboard import dashboard_page, save_screenshot
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import wait_until

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


async def _picture(page: Page, name: str) -> None:
    await save_screenshot(page, name)
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":
        await page.screenshot(path=str(IMAGES / name), full_page=True)


async def test_the_settings_flow_in_a_browser(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with receiving() as operators:
        config = accounts_config(mosquitto, tmp_path, [crm_subscription(operators)])
        async with running_bridge(config), admin_client(config) as admin:
            token = await new_account(admin, "acme")
            async with dashboard_page(
                config, token=token, path="/dashboard/settings", height=1000
            ) as page:
                await page.locator("#who", has_text="account acme").wait_for()
                # The file's subscription is the operator's: not listed for an account.
                await page.locator("#subscriptions td.empty").wait_for()

                # 1-3: the form, filled in.
                await page.fill("#f-name", "acme-crm")
                await page.fill("#f-url", receiver.url)
                await page.select_option("#f-format", "json")
                assert await page.is_checked("#f-verify")
                await page.click("#f-generate")
                secret = await page.input_value("#f-secret")
                assert secret.startswith("whsec_")
                await page.locator("#types label", has_text="a remote session began").wait_for()
                await page.check("#types input[value='session.started']")
                await page.check("#types input[value='device.online']")
                await page.fill("#f-filter", "data.device_id != 'ignored'")

                # 4: test before saving: the receiver's answer, and nothing stored.
                await page.click("#test")
                await page.locator("#test-result", has_text="HTTP 200").wait_for()
                (tried,) = receiver.requests
                assert Webhook(secret).verify(tried.body, tried.headers)["type"] == "bridge.test"
                assert (await admin.get("/api/subscriptions", token=token))[1] == {
                    "subscriptions": []
                }
                await _picture(page, "settings-form.png")

                # 5: save; the secret it was saved with is the one that signs.
                await page.click("#save")
                await page.locator("#saved", has_text="acme-crm saved").wait_for()
                row = page.locator("#subscriptions tr[data-subscription='acme-crm']")
                await row.wait_for()
                status, made = await admin.get("/api/subscriptions/acme-crm", token=token)
                assert status == 200 and made["account"] == "acme"
                assert sorted(made["events"]) == ["device.online", "session.started"]
                assert made["filter"] == "data.device_id != 'ignored'"

                # 6: monitor: its deliveries and health, as they come.
                with Publisher(mosquitto.port) as device:
                    device.publish_all(
                        [
                            ("tenants/acme/devices/d1/events", {"type": "session.started"}),
                            ("tenants/acme/devices/ignored/events", {"type": "session.started"}),
                            ("tenants/other/devices/d2/events", {"type": "session.started"}),
                        ]
                    )
                await wait_until(lambda: len(receiver.requests) == 2, message="one delivered")
                delivered = receiver.requests[1]
                assert Webhook(secret).verify(delivered.body, delivered.headers)["data"] == {
                    "device_id": "d1"
                }
                await row.click()
                await page.locator("#deliveries .pill.delivered").wait_for(timeout=10_000)
                await page.locator("#detail-health .pill.healthy").wait_for()
                await _picture(page, "settings-deliveries.png")

                # Edit: the form takes the saved fields; the change needs no secret.
                await row.locator("button.edit").click()
                await page.locator("#form-title", has_text="Edit acme-crm").wait_for()
                assert await page.is_checked("#types input[value='device.online']")
                await page.uncheck("#types input[value='device.online']")
                await page.click("#save")
                await page.locator("#saved", has_text="acme-crm saved").wait_for()
                status, changed = await admin.get("/api/subscriptions/acme-crm", token=token)
                assert changed["events"] == ["session.started"] and changed["etag"] == '"r2"'

                # Rotate: a new secret, shown once; both sign for the grace.
                page.on("dialog", lambda dialog: dialog.accept())
                await row.locator("button.rotate").click()
                await page.locator("#saved", has_text="new secret").wait_for()
                fresh = await page.inner_text("#new-secret")
                assert fresh.startswith("whsec_") and fresh != secret
                await _picture(page, "settings-rotated.png")
                assert (await admin.get("/api/subscriptions/acme-crm", token=token))[1][
                    "secrets_signing"
                ] == 2

                # Delete: gone from the list and from the API.
                await row.locator("button.delete").click()
                await page.locator("#message", has_text="acme-crm: deleted").wait_for()
                await row.wait_for(state="detached")
                assert (await admin.get("/api/subscriptions/acme-crm", token=token))[0] == 404

            # The dashboard with the account's token: its own things, no operator panels.
            await subscribe(admin, "acme-archive", receiver.url, token=token)
            async with dashboard_page(config, token=token) as page:
                await page.locator("#status", has_text="account acme").wait_for()
                await page.locator("#subscriptions td", has_text="acme-archive").wait_for()
                assert await page.locator("#subscriptions td", has_text="crm").count() == 0
                await page.locator("#devices tr[data-device='d1']").wait_for(timeout=10_000)
                for panel in ("#rejected", "#inbound", "#freshness", "#chart"):
                    assert await page.locator(panel).is_hidden(), panel
                assert await page.locator("#devices tr[data-device='d2']").count() == 0
                assert "refresh failed" not in await page.inner_text("#message")
                await _picture(page, "dashboard-account.png")
