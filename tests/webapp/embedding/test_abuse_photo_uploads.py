"""Hostile photos listed or edited in: refused before the work when they ask for too much, an edit
waits on the decode budget as an upload does, and the worker spends little on a strip."""

from __future__ import annotations

import io
import os

import structlog
from PIL import Image
from quart import Quart
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from bench.hostile import PeakRss
from tests.webapp.conftest import (
    image_file,
    photo,
    run_worker_until_idle,
    services_of,
    upload,
    wait_ready,
)
from tests.webapp.embedding.hostile_photos import many_chunk_png, many_scan_jpeg, segments, strip_png
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.structure import jpeg_scans, png_chunks

log = structlog.get_logger(__name__)
# What a hostile photo may add to the service's memory (the unbounded path adds several times this).
MAX_GROWTH_MB = 300


async def test_a_strip_uploaded_costs_the_worker_little(
    app: Quart, client: QuartClient, auth: dict[str, str]
) -> None:
    # Warm: the worker's decode processes start on their first batch.
    assert (await upload(client, photo(3), auth)).status_code == 202
    await run_worker_until_idle(app, None)
    response = await upload(client, strip_png(), auth, filename="strip.png")
    assert response.status_code == 202, await response.get_data(as_text=True)
    item_id = (await response.get_json())["id"]
    with PeakRss(os.getpid()) as memory:
        await run_worker_until_idle(app, None)
    body = await (await client.get(f"/api/items/{item_id}")).get_json()
    log.info("worker embeds a strip", rss_growth_mb=round(memory.growth_mb, 1))
    assert body["status"] == "ready", body
    assert memory.growth_mb < MAX_GROWTH_MB, memory.growth_mb


async def test_uploads_and_edits_refuse_photos_that_ask_for_too_much_work(
    client: QuartClient, auth: dict[str, str]
) -> None:
    for data, name in ((many_chunk_png(), "chunks.png"), (many_scan_jpeg(), "scans.jpg")):
        refused = await upload(client, data, auth, filename=name)
        assert refused.status_code == 422, await refused.get_data(as_text=True)
        assert (await refused.get_json())["error"]["code"] == "image_too_complex"
    listed = await upload(client, photo(4), auth)
    item_id = (await listed.get_json())["id"]
    edit = await client.patch(
        f"/api/items/{item_id}",
        form={"title": "Changed"},
        files={"image": image_file(many_chunk_png(), "chunks.png", "image/png")},
        headers=Headers(auth),
    )
    assert edit.status_code == 422, await edit.get_data(as_text=True)
    assert (await edit.get_json())["error"]["code"] == "image_too_complex"
    body = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
    assert body["title"] == "Faded denim jacket"  # a refused edit changes nothing


async def test_an_edit_with_a_photo_waits_on_the_decode_budget(
    settings: Settings, tiny_clip: ClipModel, auth: dict[str, str]
) -> None:
    limits = LimitsSettings(decode_budget_mb=16, decode_wait_s=0.2)
    app = create_app(settings.model_copy(update={"limits": limits}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client: QuartClient = app.test_client()  # type: ignore[assignment]
        item_id = (await (await upload(client, photo(5), auth)).get_json())["id"]
        before = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
        budget = services_of(app).decode_budget
        # Other decodes hold the budget: this photo cannot be decoded in time.
        async with budget.reserve(15 * 2**20):
            busy = await client.patch(
                f"/api/items/{item_id}",
                form={"title": "New photo"},
                files={"image": image_file(photo(6))},
                headers=Headers(auth),
            )
        assert busy.status_code == 503, await busy.get_data(as_text=True)
        assert (await busy.get_json())["error"]["code"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 1
        after = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
        assert (
            after["title"] == before["title"]
            and after["image_url"].split("?")[0] == before["image_url"].split("?")[0]
        )


def test_scans_and_chunks_are_counted_the_way_the_decoders_read_them() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buffer, format="JPEG", progressive=True)
    progressive = buffer.getvalue()
    assert jpeg_scans(progressive, 100) == 10  # libjpeg's standard progression
    # Bytes between segments: libjpeg skips them and reads every scan, so the count does too.
    _, start, end = [s for s in segments(progressive) if s[0] == 0xDA][-1]
    padded = progressive[:-2] + (b"\x00\x17" + progressive[start:end]) * 300 + b"\xff\xd9"
    Image.open(io.BytesIO(padded)).load()
    assert jpeg_scans(padded, 100) == 101
    assert png_chunks(strip_png(), 4096) == 3  # IHDR, IDAT, IEND
    assert png_chunks(many_chunk_png(), 4096) == 4097  # counted no further than the limit
