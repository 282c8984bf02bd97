"""Two API processes behind a real proxy, one Redis and one PostgreSQL: what holds for one task holds
for the service. A client's rate is counted once across tasks, a barred flooder is barred in every
task, a sold item leaves every task's suggestions at once, and with Redis gone each task still
answers under its own limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import websockets
from pydantic import SecretStr

from tests.conftest import ADMIN_TOKEN
from tests.webapp.conftest import listing, photo, serve_subprocess
from tests.webapp.scale.conftest import haproxy
from webapp.adapters.cache import LocalRedisServer
from webapp.config import RedisSettings, Settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEARCH_PER_S = 0.2  # slow enough that refills never hide the burst on a busy box
SEARCH_BURST = 10
# Each phase is a different shopper: loopback has a whole /8 to connect from, and the proxy
# tells the tasks which address it was.
SHOPPER, SELLER, FLOODER, AFTER_REDIS = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


def shopper(address: str, base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=address)
    )


async def searches(http: httpx.AsyncClient, count: int) -> tuple[Counter[int], Counter[str], float]:
    """``count`` searches one after another: answers by status, tasks that answered 200, seconds."""
    statuses: Counter[int] = Counter()
    served: Counter[str] = Counter()
    started = time.monotonic()
    for i in range(count):
        # A forged X-Forwarded-For changes nothing: the proxy's own entry is the one trusted.
        response = await http.get(
            "/api/search", params={"q": f"warm coat {i}"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        )
        statuses[response.status_code] += 1
        if response.status_code == 200:
            served[response.headers["X-Served-By"]] += 1
    return statuses, served, time.monotonic() - started


async def previews(ws: websockets.ClientConnection, q: str, seq: int) -> list[int]:
    await ws.send(json.dumps({"q": q, "seq": seq}))
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if answer.get("seq") == seq:
            return [item["id"] for item in answer["items"]]


async def test_two_tasks_behind_a_proxy_share_limits_bars_and_catalog_changes(
    settings: Settings, redis_binary: str, tmp_path: Path
) -> None:
    # A Redis of this test's own, to stop in the last step.
    redis = LocalRedisServer(redis_binary)
    redis.start()
    shared = settings.model_copy(update={"redis": RedisSettings(url=SecretStr(redis.url))})
    env = {
        "PRETHRIFT_LIMITS_TRUSTED_PROXIES": "1",
        "PRETHRIFT_LIMITS_SEARCH_PER_S": str(SEARCH_PER_S),
        "PRETHRIFT_LIMITS_SEARCH_BURST": str(SEARCH_BURST),
    }
    with contextlib.ExitStack() as stack:
        stack.callback(redis.stop)
        tasks = [contextlib.ExitStack() for _ in range(2)]
        for task in tasks:
            stack.enter_context(task)
        # Both tasks start at once, as a service's tasks do (on two cores, each takes twice as long).
        with ThreadPoolExecutor(2) as pool:
            started = [
                pool.submit(task.enter_context, serve_subprocess(shared, tmp_path / f"{name}.log", 180, **env))
                for task, name in zip(tasks, "ab", strict=True)
            ]
            (base_a, _), (base_b, _) = (future.result() for future in started)
        port = stack.enter_context(
            haproxy({"a": int(base_a.rsplit(":", 1)[1]), "b": int(base_b.rsplit(":", 1)[1])}, tmp_path)
        )
        proxy = f"http://127.0.0.1:{port}"

        # A listing, embedded by one of the tasks' workers.
        async with shopper(SELLER, proxy) as seller:
            created = await seller.post(
                "/api/items",
                data=listing(title="Zebra stripe scarf", category="accessories"),
                files={"image": ("photo.jpg", photo(3), "image/jpeg")},
                headers=AUTH,
            )
            assert created.status_code == 202, created.text
            item_id = created.json()["id"]
            for _ in range(300):
                if (await seller.get(f"/api/items/{item_id}", headers=AUTH)).json()["status"] == "ready":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the listing was not embedded within 30 s")

        # 1. A client's search rate is counted once, whichever task answers.
        async with shopper(SHOPPER, proxy) as http:
            statuses, served, elapsed = await searches(http, 3 * SEARCH_BURST)
        assert set(statuses) <= {200, 429}, statuses
        assert set(served) == {"a", "b"}, served  # both tasks answered it...
        # ...and together let through one burst and what refilled meanwhile, not a burst each.
        assert statuses[200] <= SEARCH_BURST + SEARCH_PER_S * elapsed + 1, (statuses, elapsed)

        # 2. An item sold through one task leaves the other's suggestions within a second.
        async with websockets.connect(base_b.replace("http", "ws") + "/ws/suggest") as ws_b:
            assert item_id in await previews(ws_b, "zebra", 1)  # held in task b's cache now
            async with httpx.AsyncClient(base_url=base_a, timeout=30) as task_a:
                sold = await task_a.patch(f"/api/items/{item_id}", json={"status": "sold"}, headers=AUTH)
                assert sold.status_code == 200, sold.text
            deadline = time.monotonic() + 1.0
            seq = 2
            while item_id in await previews(ws_b, "zebra", seq):
                assert time.monotonic() < deadline, "task b still suggests the sold item after 1 s"
                seq += 1
                await asyncio.sleep(0.05)

        # 3. A flooder cut off by one task is refused by both until its bar ends.
        ws_url = proxy.replace("http", "ws") + "/ws/suggest"
        async with websockets.connect(ws_url, local_addr=(FLOODER, 0)) as flood:
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(10_000):
                    await flood.send("x")
            await asyncio.wait_for(flood.wait_closed(), 10)
        assert flood.close_code == 1008, flood.close_code
        await asyncio.sleep(0.5)  # the task writes the bar as the socket's handler ends
        refused_by: Counter[str] = Counter()
        for _ in range(4):
            try:
                async with websockets.connect(ws_url, local_addr=(FLOODER, 0)):
                    raise AssertionError("a barred flooder opened a socket")
            except websockets.InvalidStatus as refused:
                assert refused.response.status_code == 429
                refused_by[refused.response.headers["X-Served-By"]] += 1
        assert set(refused_by) == {"a", "b"}, refused_by

        # 4. Redis gone: both tasks keep answering under their own limits, never with an error.
        redis.stop()
        async with shopper(AFTER_REDIS, proxy) as http:
            statuses, served, elapsed = await searches(http, 4 * SEARCH_BURST)
        assert set(statuses) <= {200, 429}, statuses
        assert set(served) == {"a", "b"}, served
        assert statuses[429] > 0, statuses  # still limited...
        assert statuses[200] <= 2 * (SEARCH_BURST + SEARCH_PER_S * elapsed + 1), (statuses, elapsed)
        async with websockets.connect(ws_url, local_addr=(AFTER_REDIS, 0)) as ws:
            assert await previews(ws, "zebra", 1) == []  # ...and suggestions still answer
