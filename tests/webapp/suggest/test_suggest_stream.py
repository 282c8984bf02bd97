"""Live suggestions over a real WebSocket, and progressive results over NDJSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import websockets
from quart import Quart

from tests.webapp.conftest import services_of, unsigned
from tests.webapp.helpers import seed_catalog
from webapp.search.service import SearchRequest, search_stages

CATALOG = [
    {"title": "Faded denim jacket", "brand": "Levi's", "size": "M"},
    {"title": "Denim shorts", "brand": "Lee"},
    {"title": "Dark denim jeans 501", "brand": "Levi's"},
    {"title": "Floral summer dress"},
    {"title": "Wool coat"},
]


async def frames(ws: Any, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout)) for _ in range(count)]


async def test_suggestions_are_learned_from_searches_and_ranked_by_popularity(live: tuple[Quart, str]) -> None:
    app, base = live
    ids = await seed_catalog(app, CATALOG)
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        for query, times in (("denim jacket", 3), ("Denim Shorts", 1), ("dress", 2), ("zzz nothing", 0)):
            for _ in range(times):
                assert (await http.get("/api/search", params={"q": query})).status_code == 200
        # A search that found nothing teaches nothing.
        await http.get("/api/search", params={"q": "qqqq", "mode": "keyword"})
    log = services_of(app).query_log
    assert log is not None
    await log.flush()

    async with websockets.connect(f"ws://{base}/ws/suggest") as ws:
        await ws.send(json.dumps({"q": "den", "seq": 1}))
        (answer,) = await frames(ws, 1)
        assert answer["seq"] == 1
        assert answer["suggestions"] == ["denim jacket", "denim shorts"]
        assert {i["id"] for i in answer["items"]} == set(ids[:3])
        assert all({"title", "price", "image_url", "size"} <= set(i) for i in answer["items"])

        await ws.send(json.dumps({"q": "Faded den", "seq": 2}))
        (answer,) = await frames(ws, 1)
        assert answer["seq"] == 2 and [i["id"] for i in answer["items"]] == [ids[0]]
        assert answer["suggestions"] == []

        await ws.send(json.dumps({"q": "qqqq", "seq": 3}))
        (answer,) = await frames(ws, 1)
        assert answer == {"seq": 3, "suggestions": [], "items": []}


async def test_newest_keystroke_wins(live: tuple[Quart, str]) -> None:
    app, base = live
    await seed_catalog(app, CATALOG)
    async with websockets.connect(f"ws://{base}/ws/suggest") as ws:
        for seq, text in enumerate(["d", "de", "den", "deni", "denim"], start=1):
            await ws.send(json.dumps({"q": text, "seq": seq}))
        seen: list[int] = []
        while not seen or seen[-1] != 5:
            seen.append((await frames(ws, 1))[0]["seq"])
        # Stale answers may be cancelled, and none arrives after the newest one.
        assert seen == sorted(seen) and len(seen) <= 5
        await ws.send(json.dumps({"q": "wool", "seq": 6}))
        assert (await frames(ws, 1))[0]["seq"] == 6


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(live: tuple[Quart, str]) -> None:
    _, base = live
    async with websockets.connect(f"ws://{base}/ws/suggest") as ws:
        for bad in (
            "not json",
            json.dumps({"q": 5}),
            json.dumps([1, 2]),
            json.dumps({"q": "a\x00", "seq": 6}),
            json.dumps({"q": "x" * 101, "seq": 7}),
        ):
            await ws.send(bad)
            (answer,) = await frames(ws, 1)
            assert answer["error"]["code"] == "bad_frame"
            assert "seq" in answer["error"]["message"]
        assert answer["seq"] == 7
        await ws.send(json.dumps({"q": "coat", "seq": 8}))
        (answer,) = await frames(ws, 1)
        assert answer["seq"] == 8 and "suggestions" in answer


async def test_flooding_a_socket_is_rate_limited(live: tuple[Quart, str]) -> None:
    _, base = live
    async with websockets.connect(f"ws://{base}/ws/suggest") as ws:
        for seq in range(60):
            await ws.send(json.dumps({"q": "c", "seq": seq}))
        codes = []
        while "rate_limited" not in codes:
            codes.append((await frames(ws, 1))[0].get("error", {}).get("code"))
        # Once the client slows down, it is answered again on the same socket.
        await asyncio.sleep(0.5)
        await ws.send(json.dumps({"q": "coat", "seq": 999}))
        while (frame := (await frames(ws, 1))[0]).get("seq") != 999:
            pass
        assert "suggestions" in frame


async def test_stream_sends_keyword_hits_then_the_final_ranking(live: tuple[Quart, str]) -> None:
    app, base = live
    ids = await seed_catalog(app, CATALOG)
    params = {"q": "denim", "limit": "3"}
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        streamed = await http.get("/api/search/stream", params=params)
        assert streamed.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        plain = (await http.get("/api/search", params=params)).json()
        # A second identical stream is answered from the result cache in one final line.
        cached = [
            json.loads(line) for line in (await http.get("/api/search/stream", params=params)).text.splitlines()
        ]
    assert [line["stage"] for line in lines] == ["keyword", "final"]
    assert {i["id"] for i in lines[0]["items"]} <= set(ids[:3])
    assert [i["id"] for i in lines[-1]["items"]] == [i["id"] for i in plain["items"]]
    assert [line["stage"] for line in cached] == ["final"]
    assert [unsigned(i) for i in cached[0]["items"]] == [unsigned(i) for i in lines[-1]["items"]]


async def test_keyword_hits_arrive_before_the_model_answers(app: Quart) -> None:
    await seed_catalog(app, CATALOG)
    services = services_of(app)
    model_may_answer = asyncio.Event()
    real = services.embedder.embed_text

    async def held(text: str) -> np.ndarray:
        await model_may_answer.wait()
        return await real(text)

    services.embedder.embed_text = held  # type: ignore[method-assign]
    stages = search_stages(services, SearchRequest(q="wool coat"))
    stage, hits = await asyncio.wait_for(anext(stages), 5)
    assert stage == "keyword" and [h.title for h in hits] == ["Wool coat"]
    assert not model_may_answer.is_set()  # the first results came while the model was held
    model_may_answer.set()
    stage, hits = await asyncio.wait_for(anext(stages), 5)
    assert stage == "final" and hits[0].title == "Wool coat"


async def test_stream_rejects_bad_parameters_as_json(live: tuple[Quart, str]) -> None:
    _, base = live
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        response = await http.get("/api/search/stream", params={"q": ""})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_parameters"
