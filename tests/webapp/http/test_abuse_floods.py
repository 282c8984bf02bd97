"""Request floods: a client over its rate gets 429 while others are served, the client is told
apart only through trusted proxies, and uploads and photo searches have their own buckets."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.webapp.conftest import image_file, upload, wait_ready
from tests.webapp.helpers import error_of
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings
from webapp.embedding.embedder import ClipModel


def _limited(settings: Settings, **limits: Any) -> Settings:
    return settings.model_copy(update={"limits": LimitsSettings(trusted_proxies=1, **limits)})


async def test_a_search_flood_gets_429_while_another_client_is_served(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    app = create_app(_limited(settings, search_per_s=1, search_burst=5), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()

        async def search(who: str) -> Any:
            return await client.get("/api/search", query_string={"q": "coat"}, headers={"X-Forwarded-For": who})

        flood = [await search("203.0.113.7") for _ in range(12)]
        statuses = [r.status_code for r in flood]
        assert statuses[:5] == [200] * 5 and statuses.count(429) >= 6, statuses
        refused = flood[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await error_of(refused, 429))["code"] == "rate_limited"
        for _ in range(5):
            assert (await search("198.51.100.20")).status_code == 200
        # A client cannot escape its bucket by writing its own X-Forwarded-For entries:
        # behind one proxy, only the entry that proxy appended counts.
        spoofed = await search("10.9.9.9, 203.0.113.7")
        assert spoofed.status_code == 429


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    limits = LimitsSettings(search_per_s=1, search_burst=2)
    app = create_app(settings.model_copy(update={"limits": limits}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        statuses = [
            (
                await client.get(
                    "/api/search", query_string={"q": "coat"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
                )
            ).status_code
            for i in range(4)
        ]
    assert statuses == [200, 200, 429, 429]


async def test_uploads_and_photo_searches_have_their_own_buckets(
    settings: Settings, tiny_clip: ClipModel, auth: dict[str, str]
) -> None:
    app = create_app(
        _limited(settings, photo_search_per_s=0.01, photo_search_burst=1, upload_per_s=0.01, upload_burst=1),
        clip=tiny_clip,
    )
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        png = io.BytesIO()
        Image.new("RGB", (32, 32), (1, 2, 3)).save(png, format="PNG")
        photo_search = [
            (await client.post("/api/search/image", files={"image": image_file(png.getvalue())})).status_code
            for _ in range(2)
        ]
        assert photo_search == [200, 429]
        from tests.webapp.conftest import photo

        assert (await upload(client, photo(1), auth)).status_code == 202
        refused = await upload(client, photo(2), auth)
        assert (await error_of(refused, 429))["code"] == "rate_limited"
        assert "Retry-After" in refused.headers
        # Text search still answers: the buckets are separate.
        assert (await client.get("/api/search", query_string={"q": "coat"})).status_code == 200
