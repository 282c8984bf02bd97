"""Two local origins: a storefront page served on one port embeds the widget from the API on
another, as a shop's site embeds it from ours. A second storefront, on a third port, is not on
the API's allow-list."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from tests.conftest import ADMIN_TOKEN
from tests.webapp.conftest import listing, photo, services_of
from webapp.adapters.cache import free_port
from webapp.app import create_app
from webapp.config import Settings, SuggestSettings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.worker import EmbeddingWorker
from webapp.suggest.repo import QueryLog

# title, category, size, price, photo seeds (the cover first)
ITEMS = [
    ("Faded denim jacket", "outerwear", "M", "34.50", [2]),
    ("Denim shorts", "bottoms", "S", "12.00", [6]),
    ("Camel wool coat", "outerwear", "L", "80.00", [3, 12]),
    ("Floral summer dress", "dresses", "M", "25.00", [7]),
    ("Striped cotton t-shirt", "tops", "XS", "8.00", [9]),
    ("Black skinny jeans", "bottoms", "28", "19.99", [4]),
]
# The shop's own id for one listing: what the pick event hands back.
EXTERNAL_IDS = {"Camel wool coat": "SR-coat-1042"}
AXE_INSTALL = "scripts/install-axe.sh"

STOREFRONT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Second Round: vintage clothing</title>
<style>
  body { margin: 0; font-family: Georgia, serif; background: #fbf8f3; color: #2b2b2b; }
  header { background: #23402f; color: #fff; padding: 14px 32px;
    display: flex; gap: 32px; align-items: baseline; }
  header nav a { color: #fff; margin-right: 16px; }
  main { max-width: 1100px; margin: 0 auto; padding: 16px 32px; }
  prethrift-search { --prethrift-accent: #23633f; --prethrift-background: #fbf8f3;
    --prethrift-font: 15px/1.4 Georgia, serif; --prethrift-radius: 4px; --prethrift-card-width: 9.5em; }
</style>
<script src="{api}/widget.js" defer></script>
</head>
<body>
<header>
  <h1>Second Round</h1>
  <nav aria-label="Shop"><a href="#">New in</a><a href="#">Women</a><a href="#">Men</a></nav>
</header>
<main>
<h2>Search our rails</h2>
<prethrift-search page-size="12"></prethrift-search>
</main>
<script>
  // The shop's own product page would open here; the test records what it was told.
  window.picks = [];
  document.addEventListener("prethrift-pick", (event) => window.picks.push(event.detail));
</script>
</body>
</html>
"""


class _Storefront(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def storefront() -> Iterator[tuple[str, type[_Storefront]]]:
    """A static storefront on its own port; its page is set once the API's address is known."""
    handler = type("Storefront", (_Storefront,), {})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Sites:
    api: str
    shop: str
    stranger: str
    app: Quart
    ids: dict[str, int]


@pytest.fixture(name="sites")
async def _sites(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Sites]:
    with storefront() as (shop, shop_page), storefront() as (stranger, stranger_page):
        update = {"suggest": SuggestSettings(min_clients=1), "cors_origins": (shop,)}
        app = create_app(settings.model_copy(update=update), clip=tiny_clip)
        port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        api = f"http://127.0.0.1:{port}"
        shop_page.page = stranger_page.page = STOREFRONT.replace("{api}", api).encode()
        try:
            ids = await _seed(app, api)
            yield Sites(api=api, shop=shop, stranger=stranger, app=app, ids=ids)
        finally:
            stop.set()
            await server


async def _seed(app: Quart, api: str) -> dict[str, int]:
    ids: dict[str, int] = {}
    # Generous: the uploads decode their photos in a process pool, slow on a busy machine.
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the API did not become ready")
        for title, category, size, price, seeds in ITEMS:
            fields = listing(title=title, category=category, size=size, price=price, brand="", colour="")
            if title in EXTERNAL_IDS:
                fields["external_id"] = EXTERNAL_IDS[title]
            response = await http.post(
                "/api/items",
                data=fields,
                files=[("image", (f"p{seed}.jpg", photo(seed), "image/jpeg")) for seed in seeds],
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert response.status_code == 202, response.text
            ids[title] = response.json()["id"]
        s = services_of(app)
        await EmbeddingWorker(s.pool, s.embedder, s.storage, s.settings.worker).drain()
        await http.get("/api/search", params={"q": "denim jacket"})  # teaches a suggestion
        assert isinstance(s.query_log, QueryLog)
        await s.query_log.flush()
    return ids


@pytest.fixture(name="axe_script", scope="session")
def _axe_script() -> str:
    """axe-core's browser script, installed from npm by scripts/install-axe.sh (.ci/run runs it).
    Missing, the test fails with the command: a skip would let a run pass that checked nothing."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prethrift" / "axe"
    path = Path(os.environ.get("PRETHRIFT_AXE_DIR") or default) / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        pytest.fail(
            f"axe-core is not installed at {path}, so the accessibility test cannot run. "
            f"Install it with:  {AXE_INSTALL}  (it needs npm)",
            pytrace=False,
        )
    return path.read_text()
