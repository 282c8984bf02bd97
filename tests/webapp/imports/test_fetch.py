"""Fetching photos from a real HTTP server on loopback, with the address guard on."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from tests.webapp.imports.conftest import MAX_BYTES, PhotoServer
from webapp.config import ImportSettings, StorageSettings
from webapp.imports.fetch import FetchError, PhotoFetcher, Validators, sniff


def _fetcher(settings: ImportSettings, storage: StorageSettings, **kwargs: object) -> PhotoFetcher:
    return PhotoFetcher(settings, storage, **kwargs)  # type: ignore[arg-type]


async def test_photos_come_whatever_the_server_calls_them(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    async with _fetcher(import_settings, photo_storage_settings) as fetcher:
        got = await fetcher.fetch(photo_server.url("/p/a.jpg"))
        moved = await fetcher.fetch(photo_server.url("/moved.jpg"))
        with pytest.raises(FetchError) as page:
            await fetcher.fetch(photo_server.url("/page.jpg"))
    assert got.data == photo_server.photos["a.jpg"] and got.content_type == "image/jpeg"
    assert got.validators.etag
    assert moved.data == photo_server.photos["moved-here.jpg"]
    assert page.value.kind == "not_image"  # served as image/jpeg, but it is HTML


async def test_a_known_photo_is_not_downloaded_again(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    async with _fetcher(import_settings, photo_storage_settings) as fetcher:
        first = await fetcher.fetch(photo_server.url("/p/b.jpg"))
        again = await fetcher.fetch(photo_server.url("/p/b.jpg"), first.validators)
    assert first.data is not None and again.data is None
    assert again.validators.etag == first.validators.etag


async def test_retries_honour_503_and_retry_after(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    async with _fetcher(import_settings, photo_storage_settings) as fetcher:
        flaky = await fetcher.fetch(photo_server.url("/flaky.jpg"))
        started = time.monotonic()
        busy = await fetcher.fetch(photo_server.url("/busy.jpg"))
        waited = time.monotonic() - started
        with pytest.raises(FetchError, match="asks to wait"):
            await fetcher.fetch(photo_server.url("/tomorrow.jpg"))
    assert flaky.data and photo_server.hits["/flaky.jpg"] == 2
    assert busy.data and photo_server.hits["/busy.jpg"] == 2
    assert waited >= 0.9  # the server asked for one second; the backoff alone is 10 ms
    assert photo_server.hits["/tomorrow.jpg"] == 1  # a day's wait is a failure, not a stall


async def test_slow_missing_and_oversized_photos_fail_with_reasons(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    impatient = import_settings.model_copy(update={"read_timeout_s": 0.1, "attempts": 2})
    async with _fetcher(impatient, photo_storage_settings) as fetcher:
        failures = {}
        for path in ("/slow.jpg", "/missing.jpg", "/huge.jpg", "/loop.jpg"):
            with pytest.raises(FetchError) as failed:
                await fetcher.fetch(photo_server.url(path))
            failures[path] = failed.value.kind
    assert failures == {
        "/slow.jpg": "unreachable",  # a read timeout, retried, then given up
        "/missing.jpg": "not_found",
        "/huge.jpg": "too_large",
        "/loop.jpg": "too_many_redirects",
    }
    assert photo_server.hits["/slow.jpg"] == 2 and photo_server.hits["/missing.jpg"] == 1


async def test_the_guard_refuses_internal_addresses_on_every_hop(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    answers = {"intranet.test": ["10.20.30.40"], "mixed.test": ["127.0.0.1", "192.168.1.9"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    port = photo_server.port
    async with _fetcher(import_settings, photo_storage_settings, resolver=resolver) as fetcher:
        refused = {}
        for url in (
            photo_server.url("/to-loopback.jpg"),
            photo_server.url("/to-metadata.jpg"),
            f"http://intranet.test:{port}/p/a.jpg",
            f"http://mixed.test:{port}/p/a.jpg",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://0.0.0.0:80/",
            "http://224.0.0.1/",
        ):
            with pytest.raises(FetchError) as failed:
                await fetcher.fetch(url)
            refused[url] = failed.value.kind
    assert set(refused.values()) == {"refused_address"}, refused
    assert photo_server.hits["/to-loopback.jpg"] == 1 and photo_server.hits["/to-metadata.jpg"] == 1


async def test_the_connect_goes_to_the_address_that_was_checked(
    photo_server: PhotoServer, import_settings: ImportSettings, photo_storage_settings: StorageSettings
) -> None:
    # A rebinding name: allowed at the check, internal at any later lookup. Had the client
    # resolved again to connect, it would have been sent to the metadata address.
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["169.254.169.254"]

    async with _fetcher(import_settings, photo_storage_settings, resolver=rebinding) as fetcher:
        got = await fetcher.fetch(f"http://shop.test:{photo_server.port}/p/c.jpg")
    assert got.data == photo_server.photos["c.jpg"]
    assert lookups == ["shop.test"]


async def test_private_hosts_only_when_allowed(
    photo_server: PhotoServer, photo_storage_settings: StorageSettings
) -> None:
    url = photo_server.url("/p/d.jpg")
    async with _fetcher(ImportSettings(), photo_storage_settings) as guarded:
        with pytest.raises(FetchError, match="loopback"):
            await guarded.fetch(url)
    async with _fetcher(ImportSettings(allow_private_hosts=True), photo_storage_settings) as local:
        assert (await local.fetch(url)).data == photo_server.photos["d.jpg"]
        with pytest.raises(FetchError, match="link-local"):
            await local.fetch("http://169.254.169.254/latest/meta-data/")
    assert photo_server.hits["/p/d.jpg"] == 1


async def test_bucket_and_local_photos(
    s3_endpoint: str, bucket: str, tmp_path: Path, import_settings: ImportSettings
) -> None:
    from tests.webapp.conftest import photo

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="shop/coat.jpg", Body=photo(5))
    s3.put_object(Bucket=bucket, Key="shop/big.jpg", Body=b"\xff\xd8\xff" + b"\0" * MAX_BYTES)
    (tmp_path / "local.jpg").write_bytes(photo(6))
    storage = StorageSettings(endpoint_url=s3_endpoint, max_image_bytes=MAX_BYTES)
    async with _fetcher(import_settings, storage, local_root=tmp_path) as fetcher:
        coat = await fetcher.fetch(f"s3://{bucket}/shop/coat.jpg")
        again = await fetcher.fetch(f"s3://{bucket}/shop/coat.jpg", coat.validators)
        local = await fetcher.fetch("local.jpg")
        kinds = []
        for source in (
            f"s3://{bucket}/shop/none.jpg",
            f"s3://{bucket}/shop/big.jpg",
            "../etc/passwd",
            "ftp://x/y",
        ):
            with pytest.raises(FetchError) as failed:
                await fetcher.fetch(source)
            kinds.append(failed.value.kind)
    assert coat.data == photo(5) and again.data is None and local.data == photo(6)
    assert kinds == ["not_found", "too_large", "bad_source", "bad_source"]


def test_sniffing_reads_the_bytes() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"<html>") is None
    assert Validators().etag is None
