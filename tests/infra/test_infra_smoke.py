"""The post-deploy smoke test (infra/smoke.py), run against the real API started as ECS starts
it (`prethrift serve`) on this test's PostgreSQL, Redis and S3."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.smoke import main, run
from tests.webapp.conftest import service_env
from webapp.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(name="api_url")
def _api_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = service_env(settings, PRETHRIFT_HOST="127.0.0.1", PRETHRIFT_PORT=str(port))
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def test_smoke_passes_against_a_serving_api(api_url: str) -> None:
    checks = {c.name: c for c in run(api_url, ready_within_s=180)}
    assert list(checks) == ["readyz", "text search", "photo search"]
    assert all(c.ok for c in checks.values()), checks
    # The app itself serves /metrics (for the collector on loopback); only the edge hides it,
    # so --public, meant for the ALB URL, fails here: the check can fail.
    public = {c.name: c for c in run(api_url, ready_within_s=10, public=True)}
    assert public["metrics not public"].ok is False and "HTTP 200" in public["metrics not public"].detail


def test_smoke_fails_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert main([url, "--ready-within", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  readyz" in out and "0/1 passed" in out
