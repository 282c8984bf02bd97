"""The widget for keyboard and screen-reader users: axe-core finds no serious or critical
problem in any of its states, and the suggestion list works with the keyboard alone."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, async_playwright, expect

from tests.conftest import CHROMIUM_FLAGS
from tests.webapp.widget.conftest import Sites

# Violations by rule, and how many of the widget's buttons axe checked for a name: proof that it
# looked inside the shadow root rather than at an empty host.
AXE_RUN = """async () => {
  const result = await axe.run(document.querySelector("prethrift-search"));
  const named = result.passes.find(rule => rule.id === "button-name");
  return {
    violations: result.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => n.target.join(" ")) })),
    buttons: named ? named.nodes.length : 0,
  };
}"""
ACTIVE = "() => document.activeElement?.shadowRoot?.activeElement"


async def axe_problems(page: Page) -> tuple[list[dict[str, Any]], int]:
    report: dict[str, Any] = await page.evaluate(AXE_RUN)
    serious = [v for v in report["violations"] if v["impact"] in ("serious", "critical")]
    return serious, report["buttons"]


async def test_widget_is_accessible_and_keyboard_operable(sites: Sites, chromium: str, axe_script: str) -> None:
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 860})
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(sites.shop)
        await page.wait_for_function("customElements.get('prethrift-search') !== undefined")
        await page.add_script_tag(content=axe_script)
        box = page.get_by_role("combobox", name="Search second-hand clothes")
        listbox = page.get_by_role("listbox")
        options = page.get_by_role("listbox").get_by_role("option")

        # Tab from the top of the shop's page reaches the search box.
        for _ in range(10):
            await page.keyboard.press("Tab")
            if await page.evaluate(f"({ACTIVE})()?.getAttribute('role')") == "combobox":
                break
        else:
            raise AssertionError("Tab never reached the search box")

        # Typing opens the list; arrows move the highlight while focus stays in the box.
        await page.keyboard.type("den", delay=40)
        await expect(listbox).to_be_visible()
        await expect(options).to_have_count(3)  # one query, two item previews
        serious, buttons = await axe_problems(page)
        assert serious == []
        assert buttons >= 2  # Search, Search by photo
        await page.keyboard.press("ArrowDown")
        first = options.nth(0)
        await expect(first).to_have_attribute("aria-selected", "true")
        await expect(box).to_have_attribute("aria-activedescendant", await first.get_attribute("id") or "")
        await page.keyboard.press("ArrowDown")
        await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        await expect(first).to_have_attribute("aria-selected", "false")
        await page.keyboard.press("ArrowUp")
        await expect(first).to_have_attribute("aria-selected", "true")
        assert await page.evaluate(f"({ACTIVE})()?.getAttribute('role')") == "combobox"

        # Escape closes the list; Enter on a highlighted suggestion searches for it.
        await page.keyboard.press("Escape")
        await expect(listbox).to_be_hidden()
        await expect(box).to_have_attribute("aria-expanded", "false")
        await page.keyboard.type("i", delay=40)
        await expect(options.first).to_have_text("denim jacket")
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        await expect(box).to_have_value("denim jacket")
        await expect(listbox).to_be_hidden()
        await expect(page.locator("prethrift-search .card")).to_have_count(6)

        # Results, facets and chips: no serious problem either.
        serious, buttons = await axe_problems(page)
        assert serious == []
        assert buttons > 10

        # An item preview in the list is picked with the keyboard too, and its view closes with Escape.
        await page.keyboard.press("Control+A")
        await page.keyboard.type("den", delay=40)
        await expect(options).to_have_count(3)
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible()
        assert len(await page.evaluate("window.picks")) == 1
        assert (await axe_problems(page))[0] == []
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        assert errors == []
        await browser.close()
