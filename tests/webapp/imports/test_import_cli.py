"""`prethrift ingest` on a catalog with external ids, as an operator runs it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import boto3

from tests.webapp.conftest import photo, service_env
from tests.webapp.imports.conftest import PhotoServer
from webapp.config import Settings


async def _prethrift(*args: str, env: dict[str, str]) -> tuple[int, str]:
    # Not subprocess.run: the photo server answers from this test's event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webapp.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_photos_from_urls_buckets_and_files_with_a_summary_and_exit_status(
    settings: Settings, photo_server: PhotoServer, tmp_path: Path
) -> None:
    assert settings.storage.bucket
    s3 = boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name="us-east-1")
    s3.put_object(Bucket=settings.storage.bucket, Key="shop/boots.jpg", Body=photo(40))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "scarf.jpg").write_bytes(photo(41))
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "external_id,title,price,brand,images\n"
        f"belt-1,Leather belt,15,Gucci,{photo_server.url('/p/belt.jpg')}\n"
        f"boots-1,Chelsea boots,60,,s3://{settings.storage.bucket}/shop/boots.jpg\n"
        "scarf-1,Silk scarf,25,Hermes,scarf.jpg\n"
        f"hat-1,Bucket hat,9,,{photo_server.url('/missing.jpg')}\n"
    )
    env = service_env(settings, PRETHRIFT_IMPORT_ALLOWED_HOSTS=f"127.0.0.1:{photo_server.port}")
    status, output = await _prethrift("ingest", str(catalog), "--images", str(tmp_path / "photos"), env=env)
    assert status == 1, output  # one row failed
    assert "loaded 3, updated 0, unchanged 0, skipped 0, failed 1" in output
    assert "line 5 (hat-1)" in output and "404" in output
    assert photo_server.hits["/p/belt.jpg"] == 1 and photo_server.hits["/missing.jpg"] == 1  # a 404 is final
