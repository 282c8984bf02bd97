"""The service as users reach it: `prethrift serve` behind a real Hypercorn socket."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.webapp.conftest import listing, photo, serve_subprocess, service_env
from webapp.adapters.cache import free_port
from webapp.config import Settings


@pytest.fixture(name="server")
def _server(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serve_subprocess(settings, tmp_path / "server.log") as (base, _):
        yield base


async def test_upload_becomes_ready_and_is_found_through_a_real_socket(server: str) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        started = time.perf_counter()
        response = await http.post(
            "/api/items",
            data=listing(title="Camel wool coat"),
            files={"image": ("coat.jpg", photo(3), "image/jpeg")},
            headers=auth,
        )
        assert response.status_code == 202
        item_id = response.json()["id"]
        for _ in range(300):
            status = (await http.get(f"/api/items/{item_id}", headers=auth)).json()["status"]
            if status == "ready":
                break
            await asyncio.sleep(0.05)
        assert status == "ready", status
        assert time.perf_counter() - started < 30

        found = await http.post("/api/search/image", files={"image": ("q.jpg", photo(3), "image/jpeg")})
        assert found.json()["items"][0]["id"] == item_id
        text = await http.get("/api/search", params={"q": "camel coat"})
        assert [h["id"] for h in text.json()["items"]] == [item_id]

        metrics = (await http.get("/metrics")).text
        assert 'prethrift_request_seconds_count{method="GET",route="/api/search",status="200"}' in metrics


def test_serve_refuses_to_start_without_loadable_weights(settings: Settings) -> None:
    env = service_env(settings, PRETHRIFT_PORT=str(free_port()))
    env["PRETHRIFT_CLIP_PRETRAINED"] = "/nonexistent/clip.pt"
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "PRETHRIFT_CLIP_PRETRAINED" in result.stderr and "'none'" in result.stderr


def test_production_refuses_embedded_defaults_naming_what_each_program_needs(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "IMAGES_BUCKET")}
    env.update({"ENVIRONMENT": "production", "PRETHRIFT_ADMIN_TOKEN": ""})
    needs = {
        "migrate": ("DATABASE_URL",),
        "serve": ("PRETHRIFT_ADMIN_TOKEN", "DATABASE_URL", "REDIS_URL", "IMAGES_BUCKET"),
    }
    for command, names in needs.items():
        result = subprocess.run(
            [sys.executable, "-m", "webapp.cli", command], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0
        for name in names:
            assert name in result.stderr, (command, result.stderr)
        if command == "migrate":  # it never uses the admin token, so it does not ask for one
            assert "PRETHRIFT_ADMIN_TOKEN" not in result.stderr
