"""A real HTTP server on loopback serving photos the way shops' servers misbehave."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr
from quart import Quart

from tests.webapp.conftest import photo, wait_ready
from webapp.app import create_app
from webapp.config import ImportSettings, Settings, StorageSettings
from webapp.embedding.embedder import ClipModel

MAX_BYTES = 256 * 1024


@dataclass
class PhotoServer:
    """The server's base URL, its port, and how many times each path was asked for."""

    base: str
    port: int
    hits: Counter[str] = field(default_factory=Counter)
    photos: dict[str, bytes] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _make_app(server: PhotoServer) -> web.Application:
    async def photo_route(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        server.hits[request.path] += 1
        data = server.photos.setdefault(name, photo(int(hashlib.md5(name.encode()).hexdigest(), 16) % 997))
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        # Served as octet-stream on purpose: the fetcher must trust the bytes, not the header.
        return web.Response(body=data, headers={"ETag": etag}, content_type="application/octet-stream")

    async def slow(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        await asyncio.sleep(0.3)
        return web.Response(body=photo(1), content_type="image/jpeg")

    async def flaky(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        if server.hits[request.path] == 1:
            return web.Response(status=503, text="try later")
        return web.Response(body=photo(2), content_type="image/jpeg")

    async def busy(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        if server.hits[request.path] == 1:
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        return web.Response(body=photo(3), content_type="image/jpeg")

    async def hostile_wait(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        return web.Response(status=429, headers={"Retry-After": "86400"}, text="come back tomorrow")

    async def missing(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        return web.Response(status=404, text="no such photo")

    async def huge(request: web.Request) -> web.StreamResponse:
        # No Content-Length: the cap has to hold while streaming.
        server.hits[request.path] += 1
        answer = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        answer.enable_chunked_encoding()
        await answer.prepare(request)
        await answer.write(b"\xff\xd8\xff\xe0")
        try:
            for _ in range(64):
                await answer.write(b"\0" * 65536)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up at the cap, as it should
        return answer

    async def page(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        return web.Response(text="<html>not a photo</html>", content_type="image/jpeg")

    def redirect(target: str) -> web.RouteDef:
        async def handler(request: web.Request) -> web.Response:
            server.hits[request.path] += 1
            raise web.HTTPFound(target.replace("{port}", str(server.port)))

        return handler  # type: ignore[return-value]

    app = web.Application()
    app.router.add_get("/p/{name}", photo_route)
    app.router.add_get("/slow.jpg", slow)
    app.router.add_get("/flaky.jpg", flaky)
    app.router.add_get("/busy.jpg", busy)
    app.router.add_get("/tomorrow.jpg", hostile_wait)
    app.router.add_get("/missing.jpg", missing)
    app.router.add_get("/huge.jpg", huge)
    app.router.add_get("/page.jpg", page)
    app.router.add_get("/moved.jpg", redirect("/p/moved-here.jpg"))  # type: ignore[arg-type]
    # Another port on loopback than the one allowed: the guard must refuse it.
    app.router.add_get("/to-loopback.jpg", redirect("http://127.0.0.1:9/p/x.jpg"))  # type: ignore[arg-type]
    app.router.add_get("/to-metadata.jpg", redirect("http://169.254.169.254/latest/meta-data/"))  # type: ignore[arg-type]
    app.router.add_get("/loop.jpg", redirect("/loop.jpg"))  # type: ignore[arg-type]
    return app


@pytest.fixture(name="photo_server")
async def _photo_server() -> AsyncIterator[PhotoServer]:
    server = PhotoServer("", 0)
    runner = web.AppRunner(_make_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base = f"http://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture(name="import_settings")
def _import_settings(photo_server: PhotoServer) -> ImportSettings:
    """The guard ON, with exactly the test server's address:port allowed (not all private hosts)."""
    return ImportSettings(
        allowed_hosts=f"127.0.0.1:{photo_server.port}",
        backoff_base_s=0.01,
        attempts=3,
        read_timeout_s=2,
        total_timeout_s=5,
        concurrency=4,
    )


@pytest.fixture(name="photo_storage_settings")
def _photo_storage_settings() -> StorageSettings:
    return StorageSettings(max_image_bytes=MAX_BYTES)


SHOP_SECRET = "shpss_0123456789abcdef0123456789abcdef"


def shopify_signature(body: bytes, secret: str = SHOP_SECRET) -> str:
    """X-Shopify-Hmac-Sha256 as Shopify computes it: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture(name="shop_settings")
def _shop_settings(settings: Settings, import_settings: ImportSettings) -> Settings:
    """The test settings with the webhook secret set and the photo server allowed."""
    imports = import_settings.model_copy(update={"shopify_webhook_secret": SecretStr(SHOP_SECRET)})
    return settings.model_copy(update={"imports": imports})


@pytest.fixture(name="shop_app")
async def _shop_app(shop_settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    app = create_app(shop_settings, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app
