"""The search page in Chromium: a link runs its search, and opening a result is reported."""

from __future__ import annotations

import asyncio
import json

from playwright.async_api import async_playwright, expect
from quart import Quart

from tests.conftest import CHROMIUM_FLAGS
from tests.webapp.analytics.conftest import seed_ready_items
from tests.webapp.conftest import services_of
from webapp.analytics.log import search_log_of

ITEMS = [
    {"title": "Levi's trucker jacket", "brand": "Levi's", "category": "outerwear", "size": "M"},
    {"title": "Levi's denim jacket", "brand": "Levi's", "category": "outerwear", "size": "M"},
    {"title": "Wool coat", "brand": "Uniqlo", "category": "outerwear", "size": "L"},
]


async def test_a_link_runs_its_search_and_the_result_opened_is_reported(
    live: tuple[Quart, str], chromium: str
) -> None:
    app, base = live
    ids = await seed_ready_items(app, ITEMS)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # The console's "run this search" link: q and a filter in the page's query string.
        await page.goto(f"http://{base}/?q=jacket&size=M")
        cards = page.locator("#results .card")
        await expect(cards).to_have_count(2)
        await expect(page.locator("#q")).to_have_value("jacket")
        session = await page.evaluate("sessionStorage.getItem('prethrift-session')")
        second = cards.nth(1)
        opened = int(await second.get_attribute("data-id") or 0)
        await second.click()
        await expect(page.locator("#item-view")).to_be_visible()
        pool = services_of(app).pool
        async with asyncio.timeout(10):
            while True:
                async with pool.acquire() as connection:
                    click = await connection.fetchrow("SELECT * FROM search_clicks")
                if click is not None:
                    break
                await asyncio.sleep(0.05)
        await browser.close()
    assert not errors
    assert (click["item_id"], click["position"], click["session_id"]) == (opened, 1, session)
    assert opened in ids
    await search_log_of(services_of(app)).flush()
    async with pool.acquire() as connection:
        searched = await connection.fetchrow(
            "SELECT query, given, session_id FROM search_events WHERE search_id = $1", click["search_id"]
        )
    assert searched is not None
    assert (searched["query"], json.loads(searched["given"]), searched["session_id"]) == (
        "jacket",
        {"size": "M"},
        session,
    )
