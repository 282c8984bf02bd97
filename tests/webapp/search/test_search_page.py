"""The search page, used in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect
from quart import Quart

from tests.conftest import ADMIN_TOKEN, CHROMIUM_FLAGS
from tests.webapp.conftest import listing, photo, services_of
from tests.webapp.helpers import ARTIFACTS
from webapp.embedding.worker import EmbeddingWorker

ITEMS = [
    ("Faded denim jacket", "outerwear", "M", "34.50"),
    ("Denim shorts", "bottoms", "S", "12.00"),
    ("Camel wool coat", "outerwear", "L", "80.00"),
    ("Floral summer dress", "dresses", "M", "25.00"),
    ("Striped cotton t-shirt", "tops", "XS", "8.00"),
    ("Black skinny jeans", "bottoms", "28", "19.99"),
]


async def test_search_page_in_chromium(live: tuple[Quart, str], tmp_path: Path, chromium: str) -> None:
    app, base = live
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        for seed, (title, category, size, price) in enumerate(ITEMS):
            response = await http.post(
                "/api/items",
                data=listing(
                    title=title, category=category, size=size, price=price, brand="", description="", colour=""
                ),
                files={"image": ("p.jpg", photo(seed + 40), "image/jpeg")},
                headers=auth,
            )
            assert response.status_code == 202
        s = services_of(app)
        await EmbeddingWorker(s.pool, s.embedder, s.storage, s.settings.worker).drain()
        await http.get("/api/search", params={"q": "denim jacket"})  # teaches a suggestion
        assert s.query_log is not None
        await s.query_log.flush()

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"http://{base}/")

        # Live suggestions while typing.
        await page.locator("#q").press_sequentially("den", delay=40)
        await expect(page.locator("#suggest")).to_be_visible()
        await expect(page.locator("#suggest-queries li")).to_have_text(["denim jacket"])
        await expect(page.locator("#suggest-items a")).to_have_count(2)
        await page.screenshot(path=str(ARTIFACTS / "search-page-suggestions.png"))

        # Results stream into a grid with title, size, price and score.
        await page.locator("#q").fill("denim")
        await page.locator("#q").press("Enter")
        cards = page.locator("#results .card")
        await expect(cards).to_have_count(6)
        first = cards.first
        await expect(first.locator(".title")).to_contain_text("enim")
        await expect(first.locator(".price")).to_contain_text("$")
        await expect(first.locator(".score")).to_contain_text("match")
        await expect(page.locator("#status")).to_have_text("6 items")

        # Filters narrow the results: a facet value, then a sort order.
        await page.locator("#facets [data-facet=category] button", has_text="outerwear").click()
        await expect(cards).to_have_count(2)
        await page.locator("select[name=sort]").select_option("price_desc")
        await page.locator("#q").press("Enter")
        await expect(cards).to_have_count(2)
        await expect(cards.locator(".title")).to_have_text(["Camel wool coat", "Faded denim jacket"])
        await page.screenshot(path=str(ARTIFACTS / "search-page-results.png"), full_page=True)

        # Search by photo finds the item in that photo first.
        picture = tmp_path / "query.jpg"
        picture.write_bytes(photo(40 + 3))
        await page.locator("#photo").set_input_files(str(picture))
        await expect(page.locator("#status")).to_contain_text("look-alike")
        await expect(cards.first.locator(".title")).to_have_text("Floral summer dress")

        # A bad photo is explained, not swallowed.
        junk = tmp_path / "junk.jpg"
        junk.write_bytes(b"not an image")
        await page.locator("#photo").set_input_files(str(junk))
        await expect(page.locator("#status")).to_contain_text("not an image")
        assert errors == []
        await browser.close()
