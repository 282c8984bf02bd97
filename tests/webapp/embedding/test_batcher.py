"""The batcher holds the tail: batches sized to a time budget, per-length buckets, admission."""

from __future__ import annotations

import asyncio

import pytest

from tests.webapp.conftest import wait_ready
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding.batcher import BatchCost, MicroBatcher, Overloaded
from webapp.embedding.embedder import TEXT_BUCKETS, ClipModel, text_bucket


def test_cost_model_separates_fixed_and_per_item_time() -> None:
    cost = BatchCost()
    assert cost.max_units(0.04) == float("inf")  # nothing measured: no cap yet
    for size in (1, 4, 16, 64, 2, 8, 32):
        cost.observe(size, 0.016 + 0.0033 * size)  # CPU ViT-B-32 text, truncated (bench/README)
    assert cost.fixed_s == pytest.approx(0.016, rel=1e-3)
    assert cost.per_unit_s == pytest.approx(0.0033, rel=1e-3)
    assert int(cost.max_units(0.040)) == 7  # a 40 ms budget holds 7 queries, not 64


async def test_a_batch_stops_filling_at_the_time_budget() -> None:
    sizes: list[int] = []

    async def encode(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.004 + 0.002 * len(items))  # fixed part plus a share per item
        return items

    unbounded: MicroBatcher[int, int] = MicroBatcher(
        encode, max_batch=64, max_wait_s=0.01, max_queue=500, name="u"
    )
    unbounded.start()
    try:
        assert await asyncio.gather(*(unbounded.submit(i, 30.0) for i in range(60))) == list(range(60))
    finally:
        await unbounded.stop()
    assert max(sizes) >= 30  # without a budget the whole crowd shares one or two batches

    sizes.clear()
    budgeted: MicroBatcher[int, int] = MicroBatcher(
        encode, max_batch=64, max_wait_s=0.2, max_queue=500, name="b", budget_s=0.03
    )
    budgeted.start()
    try:
        await budgeted.submit(-1, 30.0)  # the first batch teaches the cost model
        cap = budgeted.cap(1)
        # Shoppers arriving one at a time: a batch stops waiting for more once it holds what
        # the budget allows, long before max_wait_s (200 ms) would close it.
        loop = asyncio.get_running_loop()
        started = loop.time()
        trickle = []
        for i in range(cap):
            trickle.append(asyncio.create_task(budgeted.submit(i, 30.0)))
            await asyncio.sleep(0.001)
        assert await asyncio.gather(*trickle) == list(range(cap))
        assert loop.time() - started < 0.15
    finally:
        await budgeted.stop()
    # One batch seen, the model counts all of its 6 ms as per-item cost: 30 ms holds 5. Sleeps
    # overrun on a busy machine, which moves the fitted cap, so the bound asserted is loose.
    assert 1 < cap <= 20 and sizes[1:] == [cap]


async def test_a_backlog_goes_in_one_batch_rather_than_budget_sized_ones() -> None:
    sizes: list[int] = []
    release = asyncio.Event()

    async def encode(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await release.wait()
        await asyncio.sleep(0.02 + 0.001 * len(items))  # even one item takes twice the budget
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(
        encode, max_batch=64, max_wait_s=0.01, max_queue=500, name="t", budget_s=0.01, min_batch=4
    )
    batcher.start()
    try:
        release.set()
        await batcher.submit(-1, 30.0)
        assert batcher.cap(1) == 4  # the budget alone would allow no more than the floor
        release.clear()
        first = asyncio.create_task(batcher.submit(0, 30.0))
        await asyncio.sleep(0.05)  # its batch is running: twenty more queue up behind it
        backlog = [asyncio.create_task(batcher.submit(i, 30.0)) for i in range(1, 21)]
        await asyncio.sleep(0.01)
        release.set()
        assert [await first] + [await b for b in backlog] == list(range(21))
    finally:
        release.set()
        await batcher.stop()
    # One more forward pass, not five of four: served in order, the last of the backlog is
    # answered after one fixed cost instead of five.
    assert sizes[1:] == [1, 20]


async def test_queries_of_different_lengths_never_share_a_batch() -> None:
    batches: list[list[str]] = []

    async def encode(items: list[str]) -> list[str]:
        batches.append(items)
        await asyncio.sleep(0.005)
        return [i.upper() for i in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(
        encode, max_batch=64, max_wait_s=0.02, max_queue=100, name="t", bucket=text_bucket
    )
    batcher.start()
    short = [f"red dress {i}" for i in range(10)]
    long = [f"oversized wool coat with horn buttons and a wide collar in camel, number {i}" for i in range(5)]
    mixed = [q for pair in zip(short, long + [""] * 5, strict=True) for q in pair if q]
    try:
        assert await asyncio.gather(*(batcher.submit(q, 5.0) for q in mixed)) == [q.upper() for q in mixed]
    finally:
        await batcher.stop()
    for batch in batches:
        assert len({text_bucket(q) for q in batch}) == 1, batch
    assert {len(b) for b in batches} >= {5}  # the long ones still rode together


def test_text_buckets_bound_the_real_token_count(tiny_clip: ClipModel) -> None:
    queries = [
        "red dress", "levi's 501", "faded denim jacket, size M, under $40", "Ärmellose Bluse für den Sommer",
        "mustard corduroy dungarees for autumn", "oversized wool coat with horn buttons and a wide collar " * 2,
        "vintage " * 40, "",
    ]  # fmt: skip
    for query in queries:
        tokens = int(tiny_clip.tokenizer([query]).argmax(dim=-1).item()) + 1
        bucket = text_bucket(query)
        assert bucket in TEXT_BUCKETS and (tokens <= bucket or bucket == TEXT_BUCKETS[-1]), (query, tokens)


async def test_a_backlog_past_the_deadline_is_refused_at_once() -> None:
    release = asyncio.Event()

    async def encode(items: list[int]) -> list[int]:
        await asyncio.sleep(0.1)
        await release.wait()
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(
        encode, max_batch=1, max_wait_s=0, max_queue=100, name="t", budget_s=0.1
    )
    batcher.start()
    try:
        release.set()
        assert await batcher.submit(0, 5.0) == 0  # one measured batch: ~0.1 s each
        release.clear()
        backlog = [asyncio.create_task(batcher.submit(i, 5.0)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        assert batcher.predicted_wait_s() >= 0.5  # five queued batches of 0.1 s and this one
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Overloaded, match="wait would be about") as refused:
            await batcher.submit(99, 0.3)
        assert loop.time() - started < 0.1  # at once, not after the deadline ran out
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert batcher.refused == 1
        release.set()
        assert [await b for b in backlog] == [1, 2, 3, 4, 5]  # the admitted ones are all served
    finally:
        release.set()
        await batcher.stop()


async def test_an_overloaded_search_answers_503_with_retry_after(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    hurried = settings.model_copy(update={"clip": settings.clip.model_copy(update={"deadline_s": 1e-6})})
    app = create_app(hurried, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        for query in ("navy wool coat", "red linen shirt"):
            response = await client.get("/api/search", query_string={"q": query, "mode": "semantic"})
            assert response.status_code == 503
            body = await response.get_json()
            assert body["error"]["code"] == "overloaded" and "retry" in body["error"]["message"]
            assert int(response.headers["Retry-After"]) >= 1
