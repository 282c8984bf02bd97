"""The console end to end: real traffic through the service, flushed to PostgreSQL, then every
page loaded in Debian's Chromium (Playwright) from `prethrift console`'s own server."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from quart.testing import QuartClient

from tests.conftest import CHROMIUM_FLAGS
from tests.console.conftest import record_searches, running_console
from tests.webapp.conftest import photo, run_worker_until_idle, services_of, upload, wait_ready
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding.embedder import ClipModel
from webapp.observability.metrics_store import MetricsWriter

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "console-test-password"
# page path -> the charts it must draw with data
PAGES = {
    "/": ["latency-percentiles", "latency-throughput"],
    "/caches": ["caches-hit-rate", "caches-counts"],
    "/cost": ["cost-by-service", "cost-per-thousand"],
    "/ingest": ["ingest-queue", "ingest-rate"],
}


async def _traffic(client: QuartClient, settings: Settings, auth: dict[str, str], app: object) -> None:
    """Uploads (one whose photo vanishes, so its embedding fails), the worker, then searches."""
    for seed in range(6):
        assert (await upload(client, photo(seed), auth, title=f"Jacket {seed}")).status_code == 202
    s = services_of(app)  # type: ignore[arg-type]
    async with s.pool.acquire() as connection:
        lost = await connection.fetchrow("SELECT id, image_key FROM items ORDER BY id DESC LIMIT 1")
    assert lost is not None
    s3 = boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name="us-east-1")
    s3.delete_object(Bucket=settings.storage.bucket, Key=lost["image_key"])
    writer: MetricsWriter = app.extensions["metrics_writer"]  # type: ignore[attr-defined]
    await run_worker_until_idle(app, writer.recorder)
    for q in ("denim jacket", "red dress", "denim jacket", "wool coat", "red dress", "linen shirt"):
        assert (await client.get("/api/search", query_string={"q": q})).status_code == 200
    assert (await client.get("/api/items/1/similar")).status_code == 200
    assert (await client.get("/api/search", query_string={"q": "x", "limit": 0})).status_code == 422
    assert await writer.flush() > 0


async def test_every_console_page_draws_the_traffic(
    settings: Settings,
    tiny_clip: ClipModel,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    chromium: str,
) -> None:
    from playwright.async_api import async_playwright

    app = create_app(settings, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        await _traffic(app.test_client(), settings, auth, app)

    # No AWS account here: the Cost page must say "not connected" rather than fail.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with running_console(settings, PASSWORD) as base:
        ARTIFACTS.mkdir(exist_ok=True)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            context = await browser.new_context(
                http_credentials={"username": "ops", "password": PASSWORD},
                viewport={"width": 1280, "height": 1400},
            )
            page = await context.new_page()
            for path, charts in PAGES.items():
                await page.goto(base + path)
                for chart in charts:
                    await page.wait_for_selector(f"#{chart} .js-plotly-plot", timeout=30_000)
                points = await page.evaluate(
                    """(ids) => Object.fromEntries(ids.map((id) => {
                        const plot = document.querySelector(`#${id} .js-plotly-plot`);
                        return [id, plot.data.map((trace) => (trace.x || []).filter((x) => x !== null).length)];
                    }))""",
                    charts,
                )
                for chart, per_trace in points.items():
                    assert per_trace and max(per_trace) > 0, f"{path}: chart {chart} has no data points"
                name = path.strip("/") or "latency"
                await page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)
                if path == "/cost":
                    assert "Not connected" in await page.inner_text("#cost-actual-state")
                if path == "/ingest":
                    assert "could not read image" in await page.inner_text("#ingest-failures")
                    models = await page.inner_text("#ingest-models")
                    assert "prethrift-tiny/random-seed0" in models and "%" in models
                if path == "/":
                    assert "GET /api/search" in await page.inner_text("#latency-routes")
            await browser.close()


async def test_suggestion_removed_from_the_console_is_blocked(settings: Settings, chromium: str) -> None:
    from playwright.async_api import async_playwright

    assert settings.database.url is not None
    async with running_console(settings, PASSWORD) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = await browser.new_context(http_credentials={"username": "ops", "password": PASSWORD})
        page = await context.new_page()
        await page.goto(base + "/suggestions")
        await page.wait_for_selector("text=No queries learned yet", timeout=15_000)
        assert "No query is blocked" in await page.inner_text("#suggestions-blocked")

        clients = [f"198.51.100.{n}" for n in range(3)]
        searches = [("red dress", c) for c in clients] + [("red boots", c) for c in clients]
        await record_searches(settings.database.url.get_secret_value(), searches)
        await page.reload()
        row = page.locator("#suggestions-learned tr", has_text="red dress")
        await row.wait_for(timeout=15_000)
        # query, distinct clients, searches
        assert (await row.locator("td").all_inner_texts())[:3] == ["red dress", "3", "3"]
        await row.get_by_role("button", name="Remove").click()

        blocked = page.locator("#suggestions-blocked tr", has_text="red dress")
        await blocked.wait_for(timeout=15_000)
        await page.wait_for_selector("#suggestions-learned tr:has-text('red dress')", state="detached")
        assert "red boots" in await page.inner_text("#suggestions-learned")
        assert "removed and blocked" in await page.inner_text("#suggestions-message")

        await blocked.get_by_role("button", name="Unblock").click()
        await page.wait_for_selector("text=No query is blocked", timeout=15_000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "console-suggestions.png"), full_page=True)
        await browser.close()
