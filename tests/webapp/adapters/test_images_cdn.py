"""Photo URLs under the images CDN: one plain, cacheable URL per photo, whose path is the
object's key in the bucket (what CloudFront asks S3 for), in item answers and search results."""

from __future__ import annotations

from typing import cast
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from pydantic import ValidationError
from quart.testing import QuartClient

from tests.webapp.conftest import photo, upload, wait_ready
from webapp.app import create_app
from webapp.config import Settings, StorageSettings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.worker import EmbeddingWorker

CDN = "https://d111111abcdef8.cloudfront.net"


async def test_photo_urls_point_at_the_cdn(
    settings: Settings, tiny_clip: ClipModel, auth: dict[str, str]
) -> None:
    storage = settings.storage.model_copy(update={"cdn_url": CDN})
    cdn_settings = settings.model_copy(update={"storage": storage})
    app = create_app(cdn_settings, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = cast(QuartClient, app.test_client())
        created = await (await upload(client, photo(3), auth)).get_json()
        url = (await (await client.get(created["url"], headers=auth)).get_json())["image_url"]
        assert url.startswith(f"{CDN}/items/") and "?" not in url
        # The same URL every time it is served (a presigned one changes each time), so the CDN
        # and the browser cache it.
        again = await (await client.get(created["url"], headers=auth)).get_json()
        assert again["image_url"] == url
        # The path is the object's key: the CDN's origin request finds the photo that was uploaded.
        key = unquote(urlsplit(url).path.lstrip("/"))
        s3 = boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name="us-east-1")
        stored = s3.get_object(Bucket=settings.storage.bucket, Key=key)["Body"].read()
        assert stored[:2] == b"\xff\xd8" and len(stored) > 1000
        services = app.extensions["prethrift"]
        await EmbeddingWorker(services.pool, services.embedder, services.storage, settings.worker).drain()
        found = await (await client.get("/api/search", query_string={"q": "jacket"})).get_json()
        assert [hit["image_url"] for hit in found["items"]] == [url]


@pytest.mark.parametrize(
    "value", ["d111.cloudfront.net", "https://cdn.example.com/?sig=1", "ftp://cdn.example.com"]
)
def test_a_cdn_url_that_is_not_an_origin_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="CDN's origin"):
        StorageSettings(cdn_url=value)


def test_the_cdn_url_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRETHRIFT_IMAGES_CDN_URL", CDN + "/")
    assert StorageSettings().cdn_url == CDN
