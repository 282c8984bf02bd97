"""The command line: bulk ingest with a summary, the demo catalog, secrets from SSM."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import boto3

from tests.webapp.conftest import photo, service_env
from tests.webapp.helpers import items_in, prethrift
from webapp.config import Settings


async def test_ingest_loads_good_rows_and_reports_the_rest(settings: Settings, tmp_path: Path) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    for seed in range(3):
        (images / f"p{seed}.jpg").write_bytes(photo(seed))
    (images / "copy.jpg").write_bytes(photo(0))
    (images / "junk.jpg").write_bytes(b"not an image at all")
    rows = [
        {"title": "Blue jeans", "price": "20", "image": "p0.jpg", "brand": "Levi's", "size": "32"},
        {"title": "Red dress", "price": "35.5", "image": "p1.jpg", "condition": "like_new"},
        {"title": "Wool coat", "price": "80", "image": "p2.jpg", "currency": "EUR"},
        {"title": "Same jeans again", "price": "20", "image": "copy.jpg"},
        {"title": "Broken photo", "price": "10", "image": "junk.jpg"},
        {"title": "No photo", "price": "10", "image": "missing.jpg"},
        {"title": "Bad price", "price": "ten dollars", "image": "p2.jpg"},
        {"title": "Escaping", "price": "1", "image": "../../etc/passwd"},
    ]
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["title", "price", "image", "brand", "size", "condition", "currency"]
        )
        writer.writeheader()
        writer.writerows(rows)

    result = prethrift("ingest", str(catalog), "--images", str(images), env=service_env(settings))
    assert result.returncode == 1, result.stderr  # some rows failed
    assert "loaded 3, skipped 1 (already listed), failed 4" in result.stdout
    assert "line 6: The file is not an image we can read" in result.stdout
    assert "line 7: cannot read image 'missing.jpg'" in result.stdout
    assert "line 8:" in result.stdout and "price" in result.stdout
    assert "line 9: image '../../etc/passwd' is not a file inside" in result.stdout
    # Queued for the key the catalog uses, and told plainly that no worker runs for it yet.
    assert "no embedding worker is running for prethrift-tiny/random-seed0" in result.stderr
    assert await items_in(settings) == [
        ("Blue jeans", "pending"),
        ("Red dress", "pending"),
        ("Wool coat", "pending"),
    ]


def test_ingest_refuses_a_csv_without_the_needed_columns(settings: Settings, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("name,cost\nshirt,3\n")
    result = prethrift("ingest", str(catalog), "--images", str(tmp_path), env=service_env(settings))
    assert result.returncode == 1
    assert "lacks the column(s) title, price, image" in result.stderr


async def test_demo_catalog_then_worker_makes_it_searchable(settings: Settings) -> None:
    env = service_env(settings)
    result = prethrift("demo", "--items", "12", env=env)
    assert result.returncode == 0, result.stderr
    assert "loaded 12, skipped 0 (already listed), failed 0" in result.stdout
    again = prethrift("demo", "--items", "12", env=env)
    assert "loaded 0, skipped 12" in again.stdout

    worker = subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import asyncio

        for _ in range(300):
            statuses = {status for _, status in await items_in(settings)}
            if statuses == {"ready"}:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.terminate()
        assert worker.wait(timeout=20) == 0  # SIGTERM is a clean stop
    assert statuses == {"ready"}
    titles = [title for title, _ in await items_in(settings)]
    assert len(set(titles)) > 1 and all(titles)


def test_secrets_come_from_ssm_parameter_store(settings: Settings, s3_endpoint: str) -> None:
    assert settings.database.url
    ssm = boto3.client("ssm", endpoint_url=s3_endpoint, region_name="us-east-1")
    prefix = "/prethrift/" + settings.storage.bucket.rsplit("-", 1)[-1] if settings.storage.bucket else ""
    ssm.put_parameter(
        Name=f"{prefix}/DATABASE_URL", Value=settings.database.url.get_secret_value(), Type="SecureString"
    )
    ssm.put_parameter(
        Name=f"{prefix}/PRETHRIFT_ADMIN_TOKEN", Value="from-ssm-token-123456", Type="SecureString"
    )
    env = service_env(
        settings, PRETHRIFT_SSM_PREFIX=prefix, AWS_ENDPOINT_URL=s3_endpoint, AWS_REGION="us-east-1"
    )
    del env["DATABASE_URL"]
    del env["PRETHRIFT_ADMIN_TOKEN"]
    env["ENVIRONMENT"] = "production"
    result = prethrift("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert "none pending" in result.stdout  # it reached the already-migrated test database


# Runs a command in-process, then says whether the model library was imported on the way.
_IMPORTS_OF = """
import sys
from webapp.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print("exit", code, "torch" if "torch" in sys.modules else "no-torch")
"""


def test_migrate_and_plan_start_without_the_model_code(settings: Settings) -> None:
    env = service_env(settings)
    for command in (["migrate"], ["plan", "dev"]):
        result = subprocess.run(
            [sys.executable, "-c", _IMPORTS_OF, *command], env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
        assert "exit 0 no-torch" in result.stdout, (command, result.stdout[-2000:], result.stderr[-2000:])


def test_a_program_reads_from_ssm_only_the_secrets_it_uses(settings: Settings, s3_endpoint: str) -> None:
    assert settings.database.url and settings.storage.bucket
    ssm = boto3.client("ssm", endpoint_url=s3_endpoint, region_name="us-east-1")
    prefix = "/prethrift-only/" + settings.storage.bucket.rsplit("-", 1)[-1]
    ssm.put_parameter(
        Name=f"{prefix}/DATABASE_URL", Value=settings.database.url.get_secret_value(), Type="SecureString"
    )
    # An admin token the API would refuse (too short): migrate must never read it.
    ssm.put_parameter(Name=f"{prefix}/PRETHRIFT_ADMIN_TOKEN", Value="too-short", Type="SecureString")
    env = service_env(
        settings, PRETHRIFT_SSM_PREFIX=prefix, AWS_ENDPOINT_URL=s3_endpoint, AWS_REGION="us-east-1"
    )
    for name in ("DATABASE_URL", "PRETHRIFT_ADMIN_TOKEN", "REDIS_URL"):
        del env[name]
    env["ENVIRONMENT"] = "production"
    migrate = prethrift("migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr
    assert "none pending" in migrate.stdout
    serve = prethrift("serve", env=env)  # the API does read it, and refuses it
    assert serve.returncode == 1
    assert "PRETHRIFT_ADMIN_TOKEN: must be at least 16 characters" in serve.stderr
    assert "too-short" not in serve.stderr
