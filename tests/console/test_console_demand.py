"""The Demand page in Chromium: an empty log, then searches and clicks as the API logs them."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.conftest import CHROMIUM_FLAGS
from tests.console.conftest import record_demand, running_console
from webapp.analytics.log import SearchRecord
from webapp.config import AnalyticsSettings, Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "console-test-password"
SHOP = "https://shop.example.net/search"


def _searches() -> list[SearchRecord]:
    found = [
        SearchRecord(
            f"found-{n}", "tab-1", "text", "hybrid", 12, n > 0, 40.0, query="denim jacket", terms="denim jacket"
        )
        for n in range(4)
    ]
    unmet = [
        SearchRecord(
            f"unmet-{n}", "tab-2", "text", "hybrid", 0, False, 55.0, query=q, terms="carhartt jacket",
            parsed={"size": "L", "price_max": price},
        )
        for n, (q, price) in enumerate(
            [("carhartt jacket size l under 60", "60"), ("carhartt jacket in l under $55", "55")] * 2
        )
    ]  # fmt: skip
    never = [
        SearchRecord(
            "never-1", "tab-3", "text", "hybrid", 8, False, 30.0, query="linen shirt", terms="linen shirt"
        )
    ]
    return found + unmet + never


async def test_the_demand_page_with_no_searches_then_with_some(settings: Settings, chromium: str) -> None:
    from playwright.async_api import async_playwright

    assert settings.database.url is not None
    shop = settings.model_copy(update={"analytics": AnalyticsSettings(search_page_url=SHOP)})
    ARTIFACTS.mkdir(exist_ok=True)
    async with running_console(shop, PASSWORD) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = await browser.new_context(
            http_credentials={"username": "ops", "password": PASSWORD}, viewport={"width": 1280, "height": 1400}
        )
        page = await context.new_page()
        await page.goto(base + "/demand")
        await page.wait_for_selector("text=No searches logged in this period yet", timeout=30_000)
        assert await page.locator(".empty-table").count() == 7
        await page.screenshot(path=str(ARTIFACTS / "console-demand-empty.png"), full_page=True)

        await record_demand(
            settings.database.url.get_secret_value(), _searches(), [("found-0", 11, 0), ("found-1", 12, 2)]
        )
        await page.reload()
        top = page.locator("#demand-top tr", has_text="denim jacket")
        await top.wait_for(timeout=30_000)
        assert (await top.locator("td").all_inner_texts()) == ["denim jacket", "4", "0"]
        clicks = (
            await page.locator("#demand-clicks tr", has_text="denim jacket").locator("td").all_inner_texts()
        )
        assert clicks == ["denim jacket", "4", "50%", "2", "2.0"]
        assert "linen shirt" in await page.inner_text("#demand-never")
        gap = page.locator("#demand-gaps tr", has_text="carhartt")
        assert (await gap.locator("td").all_inner_texts()) == [
            "carhartt jacket in L under $60",
            "4",
            "4",
            "0",
            "2",
        ]
        link = await gap.locator("a").get_attribute("href")
        assert link is not None and link.startswith(SHOP)
        assert parse_qs(urlsplit(link).query) == {"q": ["carhartt jacket"], "size": ["L"], "price_max": ["60"]}
        assert "9" in await page.inner_text("#demand-totals")

        async with page.expect_download() as download_info:
            await page.locator("#demand-section-gaps button", has_text="Download CSV").click()
        download = await download_info.value
        rows = list(csv.reader(io.StringIO(Path(await download.path()).read_text())))
        assert rows[0][0] == "what shoppers asked for" and rows[0][-1] == "search link"
        assert rows[1][:2] == ["carhartt jacket in L under $60", "4"] and rows[1][-1] == link
        await page.screenshot(path=str(ARTIFACTS / "console-demand.png"), full_page=True)
        await browser.close()
