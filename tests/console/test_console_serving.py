"""The console's server answers what browsers send on reload: HEAD and conditional requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from dash.fingerprint import check_fingerprint

from console.state import EXTENSION
from tests.conftest import CHROMIUM_FLAGS
from webapp.adapters.cache import free_port
from webapp.config import Settings
from webapp.observability.metrics_store import MetricsRecorder, MetricsWriter


async def _record_traffic(settings: Settings) -> None:
    """Some searches in the metrics store, written the way the service writes them."""
    assert settings.database.url is not None
    pool = await asyncpg.create_pool(settings.database.url.get_secret_value(), min_size=1, max_size=2)
    try:
        recorder = MetricsRecorder()
        for i in range(50):
            recorder.request("GET /api/search", 200 if i % 10 else 422, 0.01 + i / 1000)
        assert await MetricsWriter(pool, recorder, settings.metrics).flush() > 0
    finally:
        await pool.close()


@pytest.fixture(name="console_base")
async def _console_base(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """`prethrift console`'s own server (the function the command runs), on a free port."""
    from webapp.cli.serving import serve_console

    await _record_traffic(settings)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(serve_console(settings.model_copy(update={"console_port": port}), stop))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/", timeout=2)).status_code == 200:
                    break
            assert not server.done(), server.exception()
            await asyncio.sleep(0.05)
    try:
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)


async def test_head_and_conditional_requests_get_200_or_304(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as http:
        page = await http.get("/")
        assert page.status_code == 200
        head = await http.head("/")
        assert head.status_code == 200 and head.content == b""
        assets = re.findall(r'src="/_dash-component-suites/([^/"]+)/([^"]+)"', page.text)
        assert assets, page.text[:500]
        for package, fingerprinted in assets[:3]:
            # The fingerprinted URL is cached for a year; the plain one is revalidated by ETag.
            plain, _ = check_fingerprint(fingerprinted)
            asset = f"/_dash-component-suites/{package}/{plain}"
            first = await http.get(asset)
            assert first.status_code == 200 and first.content
            head = await http.head(asset)
            assert head.status_code == 200 and head.content == b""
            etag = first.headers.get("ETag")
            assert etag, first.headers
            again = await http.get(asset, headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
            assert (await http.head(f"/_dash-component-suites/{package}/{fingerprinted}")).status_code == 200
        layout = await http.get("/_dash-layout")
        etag = layout.headers.get("ETag")
        if etag:
            assert (await http.get("/_dash-layout", headers={"If-None-Match": etag})).status_code == 304


async def test_a_browser_reload_still_shows_the_graphs_and_dropdowns(console_base: str, chromium: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.goto(console_base + "/")
        for _ in range(2):  # the first load, then a reload from the browser's cache
            await page.wait_for_selector("#latency-percentiles .js-plotly-plot", timeout=30_000)
            for dropdown in ("#stack", "#range"):
                await page.wait_for_selector(dropdown, state="visible", timeout=30_000)
                assert (await page.inner_text(dropdown)).strip(), f"{dropdown} shows no choice"
            await page.reload()
        await browser.close()


@pytest.mark.parametrize("query", ["x" * 500, "red\x00dress", "   ", 7])
async def test_a_forged_suggestion_action_changes_nothing(settings: Settings, query: object) -> None:
    """A Remove click is a callback request naming the query in the button's id, which a client
    can write itself: text no recorded query could have is refused with a message, not a 500."""
    from console.app import create_console
    from console.config import ConsoleConfig

    assert settings.database.url is not None
    dsn = settings.database.url.get_secret_value()
    dash_app = create_console(ConsoleConfig(dsn=dsn))
    button = {"type": "suggestion-remove", "query": query}
    body: dict[str, object] = {
        "outputs": [
            {"id": "suggestions-message", "property": "children"},
            {"id": "suggestions-changed", "property": "data"},
        ],
        "inputs": [[{"id": button, "property": "n_clicks", "value": 1}], []],
        "state": [
            {"id": "suggestions-changed", "property": "data", "value": 0},
            {"id": "stack", "property": "value", "value": "dev"},
        ],
        "changedPropIds": [json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
    }
    http = dash_app.server.test_client()
    try:
        # The callback's key, as the browser learns it.
        callbacks = (await asyncio.to_thread(http.get, "/_dash-dependencies")).get_json()
        [body["output"]] = [c["output"] for c in callbacks if "suggestions-message.children" in c["output"]]
        response = await asyncio.to_thread(http.post, "/_dash-update-component", json=body)
    finally:
        dash_app.server.extensions[EXTENSION].database.close()
    assert response.status_code == 200, response.text
    assert "nothing changed" in response.text
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM suggestion_blocks") == 0
    finally:
        await connection.close()
