"""Load generators: distinct shopper queries, closed- and open-loop HTTP load, WebSocket typing.

All of it runs in the benchmark's one asyncio process, on the same two cores as the server:
the generator's own CPU time is taken from the server, so figures are a lower bound on what
the server could do with the cores to itself. aiohttp is used for HTTP because its client
costs less CPU per request than httpx's, leaving more of the cores to the server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

_COLOURS = [
    "black", "white", "light blue", "navy", "grey", "beige", "brown", "olive green", "red", "pastel pink",
    "cream", "khaki", "burgundy", "mustard", "lilac", "orange", "charcoal", "camel", "denim blue",
    "leopard print",
]  # fmt: skip
_STYLES = [
    "vintage", "oversized", "cropped", "high waisted", "linen", "wool", "leather", "corduroy", "silk", "cotton",
    "chunky knit", "floral", "striped", "checked", "faux fur", "suede", "satin", "ribbed", "quilted",
    "embroidered",
    "90s", "y2k", "boho", "minimalist", "preppy", "workwear", "retro", "relaxed fit", "slim fit", "distressed",
]  # fmt: skip
_GARMENTS = [
    "jeans", "midi dress", "maxi dress", "slip dress", "denim jacket", "bomber jacket", "trench coat", "blazer",
    "cardigan", "jumper", "turtleneck", "t-shirt", "blouse", "tank top", "mini skirt", "pleated skirt",
    "cargo trousers", "chinos", "wide leg trousers", "jumpsuit", "dungarees", "hoodie", "sweatshirt", "parka",
    "puffer jacket", "ankle boots", "chelsea boots", "trainers", "loafers", "sandals", "tote bag",
    "crossbody bag", "backpack", "scarf", "beanie", "shirt", "polo shirt", "waistcoat", "kimono", "overshirt",
]  # fmt: skip
_MODIFIERS = [
    "", "for summer", "for winter", "for work", "for a wedding", "for festivals", "size m", "size s", "size 12",
    "under 30", "under 50 dollars", "like new", "with pockets", "made in italy", "by levi's", "by zara",
    "by carhartt", "by ganni", "by nike", "by patagonia", "womens", "mens", "unisex", "petite", "tall",
    "plus size", "good condition", "designer", "organic cotton", "for autumn",
]  # fmt: skip


class QueryStream:
    """Distinct shopper phrases in a seeded random order: none repeats, so none is cached."""

    def __init__(self, seed: int) -> None:
        self._radix = [len(_COLOURS), len(_STYLES), len(_GARMENTS), len(_MODIFIERS)]
        total = int(np.prod(self._radix))
        self._order = np.random.default_rng(seed).permutation(total)
        self._next = 0
        self.issued: list[str] = []

    @property
    def capacity(self) -> int:
        return len(self._order)

    def take(self) -> str:
        if self._next >= len(self._order):
            raise RuntimeError("query space exhausted; shorten the run")
        index = int(self._order[self._next])
        self._next += 1
        parts: list[int] = []
        for radix in reversed(self._radix):
            parts.append(index % radix)
            index //= radix
        m, g, s, c = parts
        phrase = f"{_COLOURS[c]} {_STYLES[s]} {_GARMENTS[g]} {_MODIFIERS[m]}".strip()
        self.issued.append(phrase)
        return phrase


def percentiles(latencies_s: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds (None when there are no samples)."""
    if not latencies_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(latencies_s) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(ms.max()), 2),
    }


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None

    def error(self, what: str) -> None:
        self.statuses[what] += 1
        if self.first_error is None:
            self.first_error = what


def search_params(query: str, mode: str | None) -> dict[str, str]:
    """GET /api/search parameters: a page of 10, in the app's default mode unless one is given."""
    params = {"q": query, "limit": "10"}
    if mode:
        params["mode"] = mode
    return params


async def _search(
    session: aiohttp.ClientSession, url: str, query: str, tally: _Tally, started: float, mode: str | None
) -> None:
    try:
        async with session.get(url, params=search_params(query, mode)) as response:
            body = await response.read()
            if response.status == 200:
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses["200"] += 1
            else:
                tally.error(f"{response.status}: {body[:200].decode(errors='replace')}")
    except (aiohttp.ClientError, TimeoutError) as error:
        tally.error(type(error).__name__)


def _summary(tally: _Tally, elapsed_s: float, **extra: Any) -> dict[str, Any]:
    ok = len(tally.latencies)
    errors = sum(n for status, n in tally.statuses.items() if status != "200")
    return {
        **extra,
        "ok": ok,
        "errors": errors,
        "first_error": tally.first_error,
        "elapsed_s": round(elapsed_s, 2),
        "qps": round(ok / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        **percentiles(tally.latencies),
    }


def new_session(connections: int, timeout_s: float = 60.0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def closed_loop(
    base_url: str,
    queries: QueryStream,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    mode: str | None = None,
) -> dict[str, Any]:
    """``concurrency`` shoppers, each sending its next distinct query as soon as the last answered."""
    url = base_url + "/api/search"
    tally = _Tally()
    sent = 0
    async with new_session(concurrency) as session:
        started = time.perf_counter()
        ends = started + duration_s

        async def shopper() -> None:
            nonlocal sent
            while time.perf_counter() < ends and sent < max_requests:
                sent += 1
                await _search(session, url, queries.take(), tally, time.perf_counter(), mode)

        await asyncio.gather(*(shopper() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _summary(tally, elapsed, concurrency=concurrency)


async def open_loop(
    base_url: str,
    queries: QueryStream,
    *,
    rate: float,
    duration_s: float,
    max_in_flight: int = 2000,
    mode: str | None = None,
) -> dict[str, Any]:
    """Queries arrive at a fixed rate whether or not earlier ones have answered.

    Latency counts from each query's scheduled arrival, so a client that falls behind its
    schedule (or a server that backs up) shows in the figures instead of hiding them.
    """
    url = base_url + "/api/search"
    tally = _Tally()
    count = max(1, int(rate * duration_s))
    dropped = 0
    tasks: set[asyncio.Task[None]] = set()
    late: list[float] = []
    async with new_session(max_in_flight) as session:
        started = time.perf_counter()
        for i in range(count):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            if len(tasks) >= max_in_flight:
                dropped += 1
                continue
            task = asyncio.create_task(_search(session, url, queries.take(), tally, scheduled, mode))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=90)
        elapsed = time.perf_counter() - started
    return _summary(
        tally,
        elapsed,
        offered_rate=round(rate, 2),
        scheduled=count,
        dropped_in_flight_cap=dropped,
        send_lag_p99_ms=round(float(np.percentile(late, 99)) * 1000, 2) if late else 0.0,
    )


async def cached_query(base_url: str, query: str, repeats: int, mode: str | None = None) -> dict[str, Any]:
    """One query, first a miss, then ``repeats`` identical requests one after another."""
    url = base_url + "/api/search"
    miss = _Tally()
    tally = _Tally()
    async with new_session(1) as session:
        await _search(session, url, query, miss, time.perf_counter(), mode)
        started = time.perf_counter()
        for _ in range(repeats):
            await _search(session, url, query, tally, time.perf_counter(), mode)
        elapsed = time.perf_counter() - started
    return _summary(
        tally,
        elapsed,
        query=query,
        first_miss_ms=round(miss.latencies[0] * 1000, 2) if miss.latencies else None,
    )


def typing_frames(phrase: str, frames: int) -> list[str]:
    """The prefixes a shopper's client sends while typing ``phrase`` (from 2 characters on)."""
    frames = max(1, min(frames, len(phrase) - 1))
    cuts = np.linspace(2, len(phrase), frames).round().astype(int)
    return [phrase[:cut] for cut in dict.fromkeys(int(c) for c in cuts)]


async def websocket_typing(
    ws_url: str,
    phrases: list[str],
    *,
    sockets: int,
    frames: int,
    gap_s: float,
    window_s: float,
    seed: int,
) -> dict[str, Any]:
    """Open ``sockets`` WebSockets and hold them; each types one phrase as prefix frames.

    Sockets start typing at random moments within ``window_s`` and send a frame every
    ``gap_s`` without waiting for answers, like a client that sends on each keystroke pause.
    Round trips are matched by ``seq``; a frame superseded by a newer one may, by design, get
    no answer, so unanswered frames are counted rather than timed.
    """
    import websockets
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    try:
        probe = await websockets.connect(ws_url, open_timeout=10, max_size=2**22)
    except InvalidStatus as error:
        return {"available": False, "reason": f"handshake answered HTTP {error.response.status_code}"}
    except (InvalidHandshake, OSError, TimeoutError) as error:
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}
    await probe.close()

    rng = random.Random(seed)
    opened: list[Any] = []
    open_errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(32)

    async def open_one() -> None:
        async with gate:
            try:
                opened.append(await websockets.connect(ws_url, open_timeout=20, max_size=2**22))
            except (InvalidHandshake, OSError, TimeoutError) as error:
                open_errors[type(error).__name__] += 1

    open_started = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(sockets)))
    open_s = time.perf_counter() - open_started

    rtts: list[float] = []
    counts: Counter[str] = Counter()
    first_error: list[str] = []

    async def type_on(socket: Any, phrase: str, offset: float) -> None:
        sent: dict[int, float] = {}
        answered: set[int] = set()
        prefixes = typing_frames(phrase, frames)
        last_seq = len(prefixes)

        async def receive() -> None:
            async for message in socket:
                received = time.perf_counter()
                try:
                    frame = json.loads(message)
                except ValueError:
                    counts["unparseable"] += 1
                    continue
                seq = frame.get("seq") if isinstance(frame, dict) else None
                if (
                    isinstance(frame, dict)
                    and ("error" in frame or "code" in frame)
                    and "suggestions" not in frame
                ):
                    counts["error_frames"] += 1
                    if not first_error:
                        first_error.append(str(frame)[:300])
                elif isinstance(seq, int) and seq in sent and seq not in answered:
                    answered.add(seq)
                    rtts.append(received - sent[seq])
                    counts["answered"] += 1
                    if not frame.get("suggestions") and not frame.get("items"):
                        counts["empty_answers"] += 1
                if last_seq in answered:
                    return

        await asyncio.sleep(offset)
        receiver = asyncio.create_task(receive())
        try:
            for seq, prefix in enumerate(prefixes, start=1):
                sent[seq] = time.perf_counter()
                await socket.send(json.dumps({"q": prefix, "seq": seq}))
                counts["sent"] += 1
                if seq < last_seq:
                    await asyncio.sleep(gap_s)
            try:
                await asyncio.wait_for(receiver, timeout=10)
            except TimeoutError:
                counts["last_frame_unanswered_10s"] += 1
        except websockets.ConnectionClosed:
            counts["closed_by_server"] += 1
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(
            *(type_on(s, rng.choice(phrases), rng.uniform(0, window_s)) for s in opened),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                counts["client_exceptions"] += 1
                if not first_error:
                    first_error.append(repr(outcome)[:300])
    finally:
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
    return {
        "available": True,
        "sockets_opened": len(opened),
        "open_errors": dict(open_errors),
        "open_all_s": round(open_s, 2),
        "frames_sent": counts["sent"],
        "frames_answered": counts["answered"],
        "frames_unanswered": counts["sent"] - counts["answered"],
        "empty_answers": counts["empty_answers"],
        "error_frames": counts["error_frames"],
        "first_error": first_error[0] if first_error else None,
        "last_frame_unanswered_10s": counts["last_frame_unanswered_10s"],
        "closed_by_server": counts["closed_by_server"],
        "client_exceptions": counts["client_exceptions"],
        "offered_frames_per_s": round(counts["sent"] / elapsed, 1) if elapsed > 0 else None,
        **percentiles(rtts),
    }
