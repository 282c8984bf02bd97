"""The search page's facets, chips and item view, in a real browser (Debian's Chromium)."""

from __future__ import annotations

import httpx
from playwright.async_api import async_playwright, expect
from quart import Quart

from tests.conftest import ADMIN_TOKEN, CHROMIUM_FLAGS
from tests.webapp.conftest import listing, photo, services_of
from tests.webapp.helpers import ARTIFACTS
from webapp.embedding.worker import EmbeddingWorker

ITEMS = [
    ("Faded denim jacket", "Levi's", "outerwear", "M", "denim blue", "34.50"),
    ("Denim trucker jacket", "Levi's", "outerwear", "L", "denim blue", "58.00"),
    ("Cropped denim jacket", "Zara", "outerwear", "M", "black", "22.00"),
    ("Denim work jacket", "Carhartt", "outerwear", "S", "denim blue", "39.00"),
    ("Camel wool coat", "COS", "outerwear", "M", "camel", "80.00"),
    ("Floral summer dress", "Zara", "dresses", "M", "pink", "25.00"),
]


async def test_facets_chips_and_item_view_in_chromium(live: tuple[Quart, str], chromium: str) -> None:
    app, base = live
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        for seed, (title, brand, category, size, colour, price) in enumerate(ITEMS):
            fields = listing(title=title, brand=brand, category=category, size=size, colour=colour, price=price)
            response = await http.post(
                "/api/items",
                data=fields,
                files={"image": ("p.jpg", photo(seed + 60), "image/jpeg")},
                headers=auth,
            )
            assert response.status_code == 202
        s = services_of(app)
        await EmbeddingWorker(s.pool, s.embedder, s.storage, s.settings.worker).drain()

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"http://{base}/")
        cards = page.locator("#results .card")

        # Constraints in plain words become chips, and only matching items show.
        await page.locator("#q").fill("denim jacket size M under $40")
        await page.locator("#q").press("Enter")
        # Hybrid search: the two jackets that match the words first, then looks-alike within the filters.
        await expect(page.locator("#status")).to_have_text("3 items")
        titles = await cards.locator(".title").all_text_contents()
        assert set(titles[:2]) == {"Faded denim jacket", "Cropped denim jacket"}, titles
        assert set(await cards.locator(".size").all_text_contents()) == {"Size M"}
        await expect(page.locator("#chips .chip.parsed")).to_have_text(["Size: M×", "Up to 40×"])
        # Sizes are counted as if no size were chosen (disjunctive), within the price: S still shows,
        # L (58.00) does not.
        await expect(page.locator("#facets [data-facet=size] .value")).to_have_text(["M", "S"])
        await expect(page.locator("#facets [data-facet=size] .count")).to_have_text(["3", "1"])
        await page.screenshot(path=str(ARTIFACTS / "search-page-chips.png"), full_page=True)

        # Removing the size chip keeps the price, as a filter of its own.
        await page.locator("#chips .chip.parsed", has_text="Size: M").click()
        await expect(page.locator("#q")).to_have_value("denim jacket")
        await expect(page.locator("#status")).to_have_text("4 items")
        await expect(page.locator("#chips .chip")).to_have_text(["Up to 40×"])

        # A facet value filters; its count matches what shows.
        await page.locator("#chips .chip").click()
        await expect(page.locator("#status")).to_have_text("6 items")
        levis = page.locator("#facets [data-facet=brand] button", has_text="Levi's")
        await expect(levis.locator(".count")).to_have_text("2")
        await levis.click()
        await expect(page.locator("#status")).to_have_text("2 items")
        await expect(levis).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#chips .chip")).to_have_text(["Brand: Levi's×"])
        # Other brands keep their counts while Levi's is chosen.
        await expect(
            page.locator("#facets [data-facet=brand] button", has_text="Zara").locator(".count")
        ).to_have_text("2")
        await page.screenshot(path=str(ARTIFACTS / "search-page-facets.png"), full_page=True)

        # The item view: the listing in full and more like it (itself excluded).
        await cards.first.click()
        view = page.locator("#item-view")
        await expect(view).to_be_visible()
        title = await cards.first.locator(".title").text_content()
        await expect(view.locator("#item-title")).to_have_text(title or "")
        await expect(view.locator("#item-fields")).to_contain_text("Levi's")
        similar = view.locator("#item-similar .card")
        await expect(similar).to_have_count(5)
        await expect(similar.locator(".title")).not_to_contain_text([title or ""])
        await page.screenshot(path=str(ARTIFACTS / "search-page-item-view.png"))
        # More like this leads on to that item.
        next_title = await similar.first.locator(".title").text_content()
        await similar.first.click()
        await expect(view.locator("#item-title")).to_have_text(next_title or "")
        await view.locator("#item-close").click()
        await expect(view).to_be_hidden()
        assert errors == []
        await browser.close()
