"""The model: real loading by checkpoint path, exact truncated text encoding, batching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from quart import Quart

from tests.webapp.conftest import image_file, photo, services_of, upload, wait_ready
from webapp.app import create_app
from webapp.config import ClipSettings, LimitsSettings, Settings
from webapp.embedding.batcher import MicroBatcher, Overloaded
from webapp.embedding.embedder import ClipModel, ModelLoadError, load_clip
from webapp.embedding.images import decode_rgb
from webapp.embedding.worker import EmbeddingWorker

QUERIES = [
    "red dress",
    "faded denim jacket, size M, under $40",
    "levi's 501",
    "a",
    "vintage " * 40,  # past the 77-token context: cut at the limit
    "oversized wool coat with horn buttons and a wide collar in camel " * 3,
]


@pytest.fixture(name="vit_b32", scope="session")
def _vit_b32() -> ClipModel:
    return load_clip(ClipSettings(model="ViT-B-32", pretrained="none"))


def test_weights_load_from_a_checkpoint_file(tmp_path: Path, tiny_clip: ClipModel) -> None:
    torch.manual_seed(123)
    original = open_clip.create_model("prethrift-tiny", pretrained=None)
    original.eval()
    checkpoint = tmp_path / "tiny-weights.pt"
    torch.save(original.state_dict(), checkpoint)

    # float32, to compare with the checkpoint bit for bit (the bfloat16 text tower has its own test)
    loaded = load_clip(ClipSettings(model="prethrift-tiny", pretrained=str(checkpoint), text_precision="fp32"))
    assert loaded.model_key == "prethrift-tiny/file-tiny-weights.pt"
    assert not loaded.random_weights
    tokens = open_clip.get_tokenizer("prethrift-tiny")(QUERIES)
    with torch.inference_mode():
        expected = original.encode_text(tokens, normalize=True).numpy()
    got = loaded.encode_texts(QUERIES)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # ... and they are not the seed-0 random weights.
    assert not np.allclose(got, tiny_clip.encode_texts(QUERIES), atol=1e-3)
    images = [decode_rgb(photo(1)), decode_rgb(photo(2))]
    with torch.inference_mode():
        batch = torch.stack([loaded.preprocess(i) for i in images])
        expected_images = original.encode_image(batch, normalize=True).numpy()
    np.testing.assert_allclose(loaded.encode_images(images), expected_images, atol=1e-5)


@pytest.mark.parametrize("pretrained", ["/nonexistent/weights.pt", "no-such-weights-tag"])
def test_unloadable_weights_fail_with_directions(pretrained: str) -> None:
    with pytest.raises(ModelLoadError) as raised:
        load_clip(ClipSettings(model="prethrift-tiny", pretrained=pretrained))
    message = str(raised.value)
    assert "PRETHRIFT_CLIP_PRETRAINED" in message and "'none'" in message and "checkpoint" in message


@pytest.mark.parametrize("which", ["tiny", "vit_b32"])
def test_truncated_text_encoding_equals_stock(which: str, request: pytest.FixtureRequest) -> None:
    clip: ClipModel = request.getfixturevalue("tiny_clip" if which == "tiny" else "vit_b32")
    assert clip.can_truncate
    stock = clip.encode_texts(QUERIES, truncate=False)
    batched = clip.encode_texts(QUERIES, truncate=True)
    one_by_one = np.stack([clip.encode_texts([q], truncate=True)[0] for q in QUERIES])
    for got in (batched, one_by_one):
        cosine = (got * stock).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(stock, axis=1))
        assert cosine.min() >= 0.9999, cosine


async def test_concurrent_queries_share_batches_and_get_their_own_answers() -> None:
    calls: list[int] = []

    async def encode(items: list[int]) -> list[int]:
        calls.append(len(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(
        encode, max_batch=8, max_wait_s=0.005, max_queue=100, name="t"
    )
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i, 5.0) for i in range(20)))
    finally:
        await batcher.stop()
    assert results == [i * 10 for i in range(20)]
    assert sum(calls) == 20 and max(calls) <= 8 and len(calls) <= 5


async def test_full_queue_and_deadline_answer_overloaded() -> None:
    release = asyncio.Event()

    async def stuck(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(stuck, max_batch=1, max_wait_s=0, max_queue=2, name="t")
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(1, 5.0))
        await asyncio.sleep(0.01)  # the loop takes it and blocks in encode
        queued = [asyncio.create_task(batcher.submit(i, 5.0)) for i in (2, 3)]
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="capacity"):
            await batcher.submit(4, 5.0)  # queue full: refused at once, not after a wait
        assert time.perf_counter() - started < 0.5
        release.set()
        assert await first == 1
        assert [await q for q in queued] == [2, 3]
    finally:
        release.set()
        await batcher.stop()


async def test_a_caller_past_its_deadline_gets_overloaded() -> None:
    async def slow(items: list[int]) -> list[int]:
        await asyncio.sleep(0.5)
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(slow, max_batch=4, max_wait_s=0, max_queue=8, name="t")
    batcher.start()
    try:
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="within 0.05s"):
            await batcher.submit(1, 0.05)
        assert time.perf_counter() - started < 0.4
    finally:
        await batcher.stop()


@pytest.fixture(name="vit_app")
async def _vit_app(settings: Settings, vit_b32: ClipModel) -> AsyncIterator[Quart]:
    app = create_app(
        settings.model_copy(update={"clip": ClipSettings(model="ViT-B-32", pretrained="none")}), clip=vit_b32
    )
    async with app.test_app():
        await wait_ready(app)
        yield app


async def test_vit_b32_architecture_end_to_end(
    vit_app: Quart, settings: Settings, auth: dict[str, str]
) -> None:
    client = vit_app.test_client()
    ids = [(await (await upload(client, photo(s), auth)).get_json())["id"] for s in range(4)]
    s = services_of(vit_app)
    assert await EmbeddingWorker(s.pool, s.embedder, s.storage, settings.worker).drain() == 4
    async with s.pool.acquire() as connection:
        dims = await connection.fetchval("SELECT DISTINCT vector_dims(embedding) FROM item_embeddings")
    assert dims == 512
    for seed, item_id in enumerate(ids):
        response = await client.post("/api/search/image", files={"image": image_file(photo(seed))})
        assert (await response.get_json())["items"][0]["id"] == item_id
    text = await client.get("/api/search", query_string={"q": "navy wool coat"})
    assert len((await text.get_json())["items"]) == 4


async def test_concurrent_photo_searches_share_model_batches(settings: Settings, tiny_clip: ClipModel) -> None:
    # Eight shoppers behind the load balancer (one client may only have a few photo searches in flight).
    patient = settings.model_copy(
        update={
            "clip": settings.clip.model_copy(update={"max_wait_ms": 100.0}),
            "limits": LimitsSettings(trusted_proxies=1),
        }
    )
    app = create_app(patient, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/search/image",
                    files={"image": image_file(photo(s))},
                    headers={"X-Forwarded-For": f"198.51.100.{s}"},
                )
                for s in range(8)
            )
        )
        assert all(r.status_code == 200 for r in responses)
        batcher = services_of(app).embedder._image
        assert batcher is not None
        assert batcher.items == 8 and batcher.batches < 8
