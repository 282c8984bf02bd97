"""Importing a Shopify export end to end: real photo server, database, bucket and upsert."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.imports.conftest import PhotoServer
from webapp.imports.pipeline import ImportSummary, import_file

HEADER = ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published", "Option1 Name",
          "Option1 Value", "Variant SKU", "Variant Price", "Image Src", "Image Position", "Status"]  # fmt: skip


def _export(path: Path, server: PhotoServer, *, skirt_title: str = "Pleated skirt", coat: bool = True) -> Path:
    rows: list[dict[str, str]] = []
    if coat:
        rows += [
            {"Handle": "wool-coat", "Title": "Wool coat", "Body (HTML)": "<p>Warm &amp; <b>heavy</b></p>",
             "Vendor": "Barbour", "Type": "Coats", "Tags": "condition:good", "Published": "TRUE",
             "Option1 Name": "Size", "Option1 Value": "M", "Variant Price": "120.00",
             "Image Src": server.url("/p/coat-b.jpg"), "Image Position": "2", "Status": "active"},
            {"Handle": "wool-coat", "Option1 Value": "L", "Variant Price": "110.00",
             "Image Src": server.url("/p/coat-a.jpg"), "Image Position": "1"},
            {"Handle": "wool-coat", "Image Src": server.url("/p/coat-c.jpg"), "Image Position": "3"},
        ]  # fmt: skip
    rows += [
        {"Handle": "pleated-skirt", "Title": skirt_title, "Body (HTML)": "<ul><li>Midi</li><li>Navy</li></ul>",
         "Vendor": "COS", "Type": "Skirts", "Published": "TRUE", "Option1 Name": "Size", "Option1 Value": "S",
         "Variant Price": "35", "Image Src": server.url("/p/skirt.jpg"), "Image Position": "1",
         "Status": "active"},
        {"Handle": "draft-shirt", "Title": "Shirt", "Vendor": "Uniqlo", "Option1 Name": "Size",
         "Option1 Value": "M", "Variant Price": "10", "Image Src": server.url("/p/shirt.jpg"),
         "Image Position": "1", "Status": "draft"},
    ]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


async def _import(app: Quart, path: Path, **options: Any) -> tuple[ImportSummary, list[str]]:
    said: list[str] = []
    summary = await import_file(services_of(app), path, None, report=said.append, progress=False, **options)
    return summary, said


async def _catalog(app: Quart) -> dict[str, dict[str, Any]]:
    async with services_of(app).pool.acquire() as connection:
        items = await connection.fetch(
            "SELECT id, external_id, title, description, brand, size, price::text AS price, category, "
            "condition FROM items WHERE status <> 'deleted'"
        )
        photos = await connection.fetch(
            "SELECT item_id, COALESCE(source_sha256, image_sha256) AS sha FROM item_photos "
            "ORDER BY item_id, position"
        )
        jobs = await connection.fetchval("SELECT count(*) FROM embedding_jobs")
    out = {r["external_id"]: {**dict(r), "photos": [p["sha"] for p in photos if p["item_id"] == r["id"]]}
           for r in items}  # fmt: skip
    out["\0jobs"] = {"count": jobs}
    return out


def _sha(server: PhotoServer, name: str) -> str:
    return hashlib.sha256(server.photos[name]).hexdigest()


async def test_an_export_loads_then_reruns_change_nothing_then_an_edit_updates_one_item(
    shop_app: Quart, photo_server: PhotoServer, tmp_path: Path
) -> None:
    export = _export(tmp_path / "products_export.csv", photo_server)
    first, said = await _import(shop_app, export)
    assert (first.loaded, first.updated, first.unchanged, first.skipped, first.failed) == (2, 0, 0, 1, 0), said
    catalog = await _catalog(shop_app)
    coat, skirt = catalog["wool-coat"], catalog["pleated-skirt"]
    assert (coat["title"], coat["brand"], coat["size"], coat["price"], coat["category"], coat["condition"]) == (
        "Wool coat", "Barbour", "M / L", "110.00", "coats", "good",
    )  # fmt: skip
    assert coat["description"] == "Warm & heavy" and skirt["description"] == "Midi\nNavy"
    assert coat["photos"] == [_sha(photo_server, n) for n in ("coat-a.jpg", "coat-b.jpg", "coat-c.jpg")]
    assert "draft-shirt" not in catalog and photo_server.hits["/p/shirt.jpg"] == 0
    hits, jobs = sum(photo_server.hits.values()), catalog["\0jobs"]["count"]

    again, _ = await _import(shop_app, export)
    assert (again.loaded, again.updated, again.unchanged, again.failed, again.downloads) == (0, 0, 2, 0, 0)
    assert sum(photo_server.hits.values()) == hits  # nothing fetched, not even conditionally
    assert (await _catalog(shop_app))["\0jobs"]["count"] == jobs  # nothing queued

    edited, _ = await _import(shop_app, _export(export, photo_server, skirt_title="Pleated midi skirt"))
    assert (edited.loaded, edited.updated, edited.unchanged, edited.downloads) == (0, 1, 1, 0)
    after = await _catalog(shop_app)
    assert (
        after["pleated-skirt"]["title"] == "Pleated midi skirt" and after["pleated-skirt"]["id"] == skirt["id"]
    )
    assert after["\0jobs"]["count"] == jobs  # same photo: not stored or embedded again


async def test_failures_are_reported_and_a_rerun_fetches_only_them(
    shop_app: Quart, photo_server: PhotoServer, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(
        "external_id,title,price,images\n"
        f"tee-1,Striped tee,12,{photo_server.url('/p/tee-front.jpg')}|{photo_server.url('/p/tee-back.jpg')}\n"
        f"tee-2,Plain tee,9,{photo_server.url('/missing.jpg')}\n"
        f"tee-3,Odd tee,9,{photo_server.url('/to-metadata.jpg')}\n"
    )
    summary, said = await _import(shop_app, path)
    assert (summary.loaded, summary.failed) == (1, 2)
    reasons = dict(summary.failures)
    assert "404" in reasons["line 3"] and "link-local" in reasons["line 4"]
    assert any("tee-2" in line for line in said)
    path.write_text(
        path.read_text().replace("/missing.jpg", "/p/tee-plain.jpg").replace("/to-metadata.jpg", "/p/odd.jpg")
    )
    before = photo_server.hits.copy()
    second, _ = await _import(shop_app, path)
    assert (second.loaded, second.unchanged, second.failed) == (2, 1, 0)
    assert photo_server.hits["/p/tee-front.jpg"] == before["/p/tee-front.jpg"]  # the loaded row is not fetched


async def test_rows_gone_from_the_file_are_reported_and_deleted_only_when_asked(
    shop_app: Quart, photo_server: PhotoServer, tmp_path: Path
) -> None:
    export = _export(tmp_path / "products_export.csv", photo_server)
    await _import(shop_app, export)
    _export(export, photo_server, coat=False)
    kept, _ = await _import(shop_app, export)
    assert kept.missing == ["wool-coat"] and kept.deleted == 0 and "wool-coat" in await _catalog(shop_app)
    removed, _ = await _import(shop_app, export, delete_missing=True)
    assert removed.missing == ["wool-coat"] and removed.deleted == 1
    assert "wool-coat" not in await _catalog(shop_app)
