"""Careless and hostile input: odd ids and paths, metadata in photos, request floods, decode
budget, and the headers and error documents that keep the API honest."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from hypercorn.asyncio import serve
from hypercorn.config import Config
from PIL import Image
from quart import Quart
from quart.testing import QuartClient

from bench.hostile import single_colour_png
from tests.webapp.conftest import image_file, services_of, upload, wait_ready
from tests.webapp.test_bad_input import error_of
from webapp.adapters.cache import free_port
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings, StorageSettings
from webapp.embedding.embedder import ClipModel

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def _jpeg_with_exif(orientation: int, size: tuple[int, int] = (120, 80)) -> bytes:
    """A landscape JPEG, red at the top, carrying a GPS position and an EXIF orientation."""
    image = Image.new("RGB", size, (20, 20, 220))
    image.paste((230, 20, 20), (0, 0, size[0], size[1] // 4))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 12.5)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.9)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


async def _stored_photo(client: QuartClient, auth: dict[str, str], data: bytes) -> bytes:
    response = await upload(client, data, auth)
    assert response.status_code == 202, await response.get_data(as_text=True)
    url = (
        await (await client.get(f"/api/items/{(await response.get_json())['id']}", headers=auth)).get_json()
    )["image_url"]
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200
    return fetched.content


async def test_stored_photos_carry_no_gps_and_stand_upright(client: QuartClient, auth: dict[str, str]) -> None:
    original = _jpeg_with_exif(orientation=6)
    with Image.open(io.BytesIO(original)) as sent:
        assert sent.getexif().get_ifd(GPS_IFD)  # the upload really carries a position
    served = await _stored_photo(client, auth, original)
    assert b"PhoneMaker" not in served
    with Image.open(io.BytesIO(served)) as image:
        assert not image.getexif().get_ifd(GPS_IFD)
        assert ORIENTATION not in image.getexif()
        assert "exif" not in image.info
        # Orientation 6: the camera was turned a quarter clockwise; upright, the red top edge
        # of the sensor image is on the right and the photo is portrait.
        assert image.size == (80, 120)
        rgb = image.convert("RGB")
        right, left = rgb.getpixel((75, 60)), rgb.getpixel((5, 60))
    assert isinstance(right, tuple) and isinstance(left, tuple)
    assert right[0] > 150 and right[2] < 100, right
    assert left[2] > 150 and left[0] < 100, left


async def test_photos_without_metadata_are_stored_byte_for_byte(
    client: QuartClient, auth: dict[str, str]
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(buffer, format="PNG")
    assert await _stored_photo(client, auth, buffer.getvalue()) == buffer.getvalue()


@pytest.mark.parametrize("raw", ["%C2%B2", "%E2%91%A0", "%D9%A3", "%EF%BC%91", "1%00", "%00"])
async def test_ids_are_ascii_digits_only(client: QuartClient, raw: str) -> None:
    # ², ①, Arabic-Indic three, fullwidth one, and NUL bytes.
    error = await error_of(await client.get(f"/api/items/{raw}"), 400)
    assert error["code"] == "invalid_id"
    await error_of(await client.get(f"/api/items/{raw}/similar"), 400)


@pytest.fixture(name="local_app")
async def _local_app(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    # Without a bucket the app serves photos itself from data_dir.
    app = create_app(settings.model_copy(update={"storage": StorageSettings()}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app


@pytest.mark.parametrize(
    "path", ["/images/%00", "/images/items/%00.jpg", "/images/%FF%FE", "/images/..%2F..%2Fetc"]
)
async def test_odd_bytes_in_image_paths_are_404(local_app: Quart, path: str) -> None:
    await error_of(await local_app.test_client().get(path), 404)


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


async def test_the_decode_budget_refuses_with_503_and_retry_after(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    limits = LimitsSettings(decode_budget_mb=200, decode_wait_s=0.2)
    app = create_app(settings.model_copy(update={"limits": limits}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        big = single_colour_png()
        budget = services_of(app).decode_budget
        # Another decode holds most of the budget: this one cannot start in time.
        async with budget.reserve(100 * 2**20):
            busy = await client.post(
                "/api/search/image", files={"image": image_file(big, "big.png", "image/png")}
            )
        assert (await error_of(busy, 503))["code"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 1
        assert budget.in_use == 0
        # With the budget free it is decoded (once, at reduced size) and searched.
        assert (
            await client.post("/api/search/image", files={"image": image_file(big, "big.png", "image/png")})
        ).status_code == 200


async def test_a_decode_larger_than_the_whole_budget_is_422(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(
        settings.model_copy(update={"limits": LimitsSettings(decode_budget_mb=64)}), clip=tiny_clip
    )
    async with app.test_app():
        await wait_ready(app)
        big = single_colour_png()
        response = await app.test_client().post(
            "/api/search/image", files={"image": image_file(big, "big.png", "image/png")}
        )
        error = await error_of(response, 422)
        assert error["code"] == "image_too_large" and "MB" in error["message"]


async def test_security_headers(client: QuartClient) -> None:
    page = await client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    body = await page.get_data(as_text=True)
    assert "<script>" not in body and "<script src=" in body  # no inline script to allow
    for response in (page, await client.get("/api/search", query_string={"q": "x"}), await client.get("/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/search", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/api/items", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
async def test_405_says_what_is_allowed(client: QuartClient, method: str, path: str, allowed: set[str]) -> None:
    response = await client.open(path, method=method)
    await error_of(response, 405)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_openapi_declares_the_bearer_scheme_and_error_responses(app: Quart) -> None:
    spec = app.test_client()
    del spec  # the document is built from the app without a request
    document = json.loads(json.dumps(app.extensions["QUART_SCHEMA"].openapi_provider.schema()))
    operations = {
        (method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()
    }
    for key in (("POST", "/api/items"), ("DELETE", "/api/items/{raw_id}")):
        assert operations[key]["security"] == [{"bearer": []}], key
        assert {"401", "403"} <= set(operations[key]["responses"])
    assert "security" not in operations[("GET", "/api/search")]
    assert "content" not in operations[("DELETE", "/api/items/{raw_id}")]["responses"]["204"]
    assert "application/x-ndjson" in operations[("GET", "/api/search/stream")]["responses"]["200"]["content"]
    expected = {
        ("GET", "/api/search"): {"422", "429", "503"},
        ("POST", "/api/search/image"): {"413", "415", "422", "429", "503"},
        ("POST", "/api/items"): {"401", "403", "409", "413", "415", "422", "429", "503"},
        ("GET", "/api/items/{raw_id}"): {"400", "404"},
        ("GET", "/api/items/{raw_id}/similar"): {"400", "404", "422", "503"},
    }
    for key, codes in expected.items():
        responses = operations[key]["responses"]
        assert codes <= set(responses), (key, sorted(responses))
        for code in codes:
            schema = responses[code]["content"]["application/json"]["schema"]
            named = schema.get("title") or schema.get("$ref", "").rsplit("/", 1)[-1]
            assert named == "ErrorOut", (key, code, schema)


@contextlib.asynccontextmanager
async def _hypercorn(app: Quart) -> AsyncIterator[str]:
    """The app behind a real Hypercorn socket on loopback; yields host:port once ready."""
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        await server


@pytest.fixture(name="live_base")
async def _live_base(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[str]:
    async with _hypercorn(create_app(settings, clip=tiny_clip)) as base:
        yield base


async def test_odd_websocket_frames_get_error_frames_and_the_socket_lives(live_base: str) -> None:
    frames = [
        '{"q": "denim\\udbff\\udfff", "seq": 1}',  # q ends in U+10FFFF: a real answer
        '{"q": "den\\ud800im", "seq": 2}',  # a lone surrogate
        "[" * 2000 + "]" * 2000,  # nested past the parser's recursion limit
        "[" * 100_000 + "]" * 100_000,  # nested 100k deep (and larger than a frame may be)
        b"\xff\xfe binary",
    ]
    async with websockets.connect(f"ws://{live_base}/ws/suggest", max_size=2**20) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await ws.send(json.dumps({"q": "coat", "seq": 9}))
        last = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answers[0]["seq"] == 1 and "suggestions" in answers[0], answers[0]
    assert answers[1]["seq"] == 2 and answers[1]["error"]["code"] == "bad_frame"
    assert answers[2]["error"]["code"] == "bad_frame"
    assert answers[3]["error"]["code"] == "frame_too_large"
    assert answers[4]["error"]["code"] == "bad_frame"
    assert last["seq"] == 9 and "suggestions" in last


async def test_sockets_per_client_are_capped(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(settings.model_copy(update={"limits": LimitsSettings(ws_per_client=2)}), clip=tiny_clip)
    async with _hypercorn(app) as base:
        url = f"ws://{base}/ws/suggest"
        async with websockets.connect(url) as first, websockets.connect(url):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            assert refused.value.response.status_code == 429
            assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "too_many_sockets"
            await first.send(json.dumps({"q": "coat", "seq": 1}))
            assert json.loads(await asyncio.wait_for(first.recv(), 10))["seq"] == 1
        # Closing one frees its place.
        async with websockets.connect(url) as again:
            await again.send(json.dumps({"q": "coat", "seq": 2}))
            assert json.loads(await asyncio.wait_for(again.recv(), 10))["seq"] == 2


async def test_a_flooding_socket_is_closed_and_its_client_barred(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    limits = LimitsSettings(trusted_proxies=1, ws_flood_bar_s=60)
    app = create_app(settings.model_copy(update={"limits": limits}), clip=tiny_clip)
    flooder = {"X-Forwarded-For": "203.0.113.9"}
    async with _hypercorn(app) as base:
        url = f"ws://{base}/ws/suggest"
        async with websockets.connect(url, additional_headers=flooder) as ws:
            # Far past the rate, sent faster than the allowance refills, never reading.
            with pytest.raises(websockets.ConnectionClosedError):
                for sent in range(20_000):
                    await ws.send("not json at all")
                    if sent % 500 == 0:
                        await asyncio.sleep(0.01)
                await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008 and ws.close_reason == "too many frames"
        # Reconnecting at once would resume the flood: refused, with when to come back.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=flooder):
                pass
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 30
        # Another shopper is served as before.
        async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.4"}) as other:
            await other.send(json.dumps({"q": "coat", "seq": 1}))
            assert json.loads(await asyncio.wait_for(other.recv(), 10))["seq"] == 1


async def test_an_idle_socket_is_closed(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(settings.model_copy(update={"limits": LimitsSettings(ws_idle_s=0.5)}), clip=tiny_clip)
    async with _hypercorn(app) as base, websockets.connect(f"ws://{base}/ws/suggest") as ws:
        await ws.send(json.dumps({"q": "coat", "seq": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["seq"] == 1
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000 and ws.close_reason == "idle"
