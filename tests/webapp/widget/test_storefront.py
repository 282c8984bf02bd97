"""The widget on a shop's own site, in Chromium: a storefront on one port embeds it from the API
on another. It searches, suggests, filters, searches by photo and tells the shop which item was
picked; a storefront whose origin is not on the allow-list gets nothing, and no page gets to the
admin routes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import ADMIN_TOKEN, CHROMIUM_FLAGS
from tests.webapp.conftest import photo
from tests.webapp.widget.conftest import Sites

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
# What a page can learn of a WebSocket: whether it opened. A refused upgrade never does.
OPENS = """url => new Promise(done => {
  const socket = new WebSocket(url);
  socket.onopen = () => { socket.close(); done("open"); };
  socket.onclose = () => done("refused");
})"""
FETCH = """([url, init]) => fetch(url, init).then(r => r.status, e => e.name)"""


async def open_storefront(browser: Browser, url: str, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 860})
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    await page.wait_for_function("customElements.get('prethrift-search') !== undefined")
    return page


async def test_a_shop_embeds_the_widget_from_another_origin(
    sites: Sites, chromium: str, tmp_path: Path
) -> None:
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await open_storefront(browser, sites.shop, errors)
        sent: list[str] = []
        page.on("request", lambda request: sent.append(request.url))
        box = page.get_by_role("combobox", name="Search second-hand clothes")
        options = page.get_by_role("listbox").get_by_role("option")
        cards = page.locator("prethrift-search .card")

        # Live suggestions over the socket, across origins.
        await box.press_sequentially("den", delay=40)
        await expect(page.get_by_role("listbox")).to_be_visible()
        await expect(options.first).to_have_text("denim jacket")
        await expect(box).to_have_attribute("aria-expanded", "true")

        # Choosing the suggestion searches for it: results, facets with counts, a status line.
        await options.first.click()
        await expect(box).to_have_value("denim jacket")
        await expect(cards).to_have_count(6)
        await expect(page.locator("prethrift-search .status")).to_have_text("6 items")
        await expect(cards.first).to_contain_text("enim")

        # A facet narrows the results and becomes a chip; the chip lets it go again.
        await page.locator("prethrift-search [data-facet=category] button", has_text="outerwear").click()
        await expect(cards).to_have_count(2)
        chip = page.get_by_role("button", name="Remove filter Category: outerwear")
        await expect(chip).to_be_visible()
        await page.screenshot(path=str(ARTIFACTS / "widget-storefront.png"))
        await chip.click()
        await expect(cards).to_have_count(6)
        await expect(chip).to_have_count(0)

        # Every search names the tab's anonymous session: one random id, the same for each.
        sessions = {
            parse_qs(urlsplit(url).query).get("session_id", [""])[0] for url in sent if "/api/search?" in url
        }
        assert len(sessions) == 1
        # The page's page-size attribute and its theme reach inside the shadow root.
        assert {parse_qs(urlsplit(url).query)["limit"][0] for url in sent if "/api/search?" in url} == {"12"}
        search_button = page.locator("prethrift-search button.go")
        assert await search_button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(35, 99, 63)"
        session = sessions.pop()
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", session)

        # Picking an item tells the shop which one (its own id and the shop's), then shows its photos.
        await cards.filter(has_text="Camel wool coat").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()
        picks: list[dict[str, Any]] = await page.evaluate("window.picks")
        assert [(p["id"], p["external_id"], p["position"] >= 0) for p in picks] == [
            (sites.ids["Camel wool coat"], "SR-coat-1042", True)
        ]
        await expect(dialog.get_by_role("heading", name="Camel wool coat")).to_be_visible()
        # The pick is reported across origins to the click log, with the search it came from and
        # the tab's session, and nothing that names the shopper.
        clicked = await _recorded_click(sites, sites.ids["Camel wool coat"])
        assert (clicked["search_id"], clicked["session_id"]) == (picks[0]["search_id"], session)
        shot = dialog.locator("img.shot")
        cover, second = (p["image_url"].split("?")[0] for p in picks[0]["item"]["photos"])
        await expect(shot).to_have_attribute("src", re.compile(re.escape(cover)))
        await dialog.get_by_role("button", name="Photo 2 of 2").click()
        await expect(shot).to_have_attribute("src", re.compile(re.escape(second)))
        await expect(shot).to_have_attribute("alt", "Camel wool coat, photo 2 of 2")
        await expect(shot).to_have_js_property("complete", True)
        assert await shot.evaluate("img => img.naturalWidth") > 0
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        # Search by photo finds the garment in that photo first.
        picture = tmp_path / "query.jpg"
        picture.write_bytes(photo(7))
        await page.locator("prethrift-search input[type=file]").set_input_files(str(picture))
        await expect(cards.first).to_contain_text("Floral summer dress")

        # An admin call from this allowed page is refused by the browser: the preflight is.
        victim = sites.ids["Denim shorts"]
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        url = f"{sites.api}/api/items/{victim}"
        deleted = await page.evaluate(FETCH, [url, {"method": "DELETE", "headers": auth}])
        json_auth = {**auth, "Content-Type": "application/json"}
        patch = {"method": "PATCH", "headers": json_auth, "body": '{"price": "1"}'}
        patched = await page.evaluate(FETCH, [url, patch])
        assert (deleted, patched) == ("TypeError", "TypeError")
        async with httpx.AsyncClient(base_url=sites.api) as http:
            kept = await http.get(f"/api/items/{victim}")
        assert kept.status_code == 200
        assert kept.json()["price"] == "12.00"
        assert errors == []
        await browser.close()


async def _recorded_click(sites: Sites, item_id: int) -> dict[str, Any]:
    """The click row the API logged for ``item_id`` (clicks are written off the request path)."""
    pool = sites.app.extensions["prethrift"].pool
    for _ in range(100):
        async with pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT search_id, session_id, position FROM search_clicks WHERE item_id = $1", item_id
            )
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no click was recorded for item {item_id}")


async def test_a_storefront_not_on_the_list_gets_nothing(sites: Sites, chromium: str) -> None:
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        socket_url = sites.api.replace("http:", "ws:") + "/ws/suggest"
        allowed = await open_storefront(browser, sites.shop, errors)
        assert await allowed.evaluate(OPENS, socket_url) == "open"

        page = await open_storefront(browser, sites.stranger, errors)
        assert await page.evaluate(OPENS, socket_url) == "refused"
        # What the browser hides from the page: the upgrade was answered 403, before any socket.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(socket_url, origin=websockets.Origin(sites.stranger)):
                pass
        assert refused.value.response.status_code == 403
        assert await page.evaluate(FETCH, [f"{sites.api}/api/search?q=denim", {}]) == "TypeError"
        box = page.get_by_role("combobox", name="Search second-hand clothes")
        await box.press_sequentially("den", delay=40)
        await box.press("Enter")
        await expect(page.locator("prethrift-search .status")).to_have_text(
            "The search service cannot be reached from this page."
        )
        await expect(page.get_by_role("listbox")).to_be_hidden()
        await expect(page.locator("prethrift-search .card")).to_have_count(0)
        assert errors == []
        await browser.close()


async def test_without_its_socket_the_widget_still_searches(sites: Sites, chromium: str) -> None:
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = await browser.new_context()
        # What a page sees of a refused upgrade (a proxy that drops WebSockets, say): no open, a close.
        await context.add_init_script(
            """window.socketTries = 0;
            window.WebSocket = class extends EventTarget {
              static OPEN = 1;
              constructor() { super(); window.socketTries++; this.readyState = 0;
                setTimeout(() => { this.readyState = 3; this.onclose && this.onclose({ code: 1006 }); }, 10); }
              send() { throw new Error("not open"); }
              close() {}
            };"""
        )
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(sites.shop)
        box = page.get_by_role("combobox", name="Search second-hand clothes")
        await box.press_sequentially("denim", delay=40)
        await box.press("Enter")
        await expect(page.locator("prethrift-search .card")).to_have_count(6)
        await expect(page.get_by_role("listbox")).to_be_hidden()
        # It gave up on the socket after a few tries rather than hammering the service.
        await page.wait_for_function("window.socketTries >= 3", timeout=15000)
        await page.wait_for_timeout(1000)
        assert await page.evaluate("window.socketTries") == 3
        assert errors == []
        await browser.close()
