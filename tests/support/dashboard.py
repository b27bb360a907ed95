"""The dashboard as an operator sees it: a headless Chromium page, logged in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.support.admin import TOKEN, api_url
from tests.support.system_deps import find

__all__ = ["dashboard_page", "save_screenshot"]

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextlib.asynccontextmanager
async def dashboard_page(
    config: dict[str, Any], *, height: int = 900, token: str = TOKEN, path: str = "/dashboard"
) -> AsyncIterator[Page]:
    """The dashboard (or another page, ``path``) of the bridge ``config`` describes,
    1400 px wide, after ``token`` (the operator's unless given) was entered; the browser
    is closed when the block ends."""
    chromium = find("chromium")
    assert chromium is not None, "chromium is not installed (make test installs it)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": height})
            await page.goto(api_url(config) + path)
            await page.fill("#token", token)
            await page.click("#login-form button")
            yield page
        finally:
            await browser.close()


async def save_screenshot(page: Page, name: str) -> None:
    """The whole page as ``tests/artifacts/<name>``, for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
