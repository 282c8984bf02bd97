"""Bulk loading: a catalog CSV with a folder of photos, or the synthetic demo catalog."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from webapp.context import Services
from webapp.demo import demo_items
from webapp.errors import ApiError
from webapp.items.service import create_item, parse_fields

CSV_COLUMNS = ("title", "price", "image")


@dataclass
class IngestSummary:
    loaded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"loaded {self.loaded}, skipped {self.skipped} (already listed), failed {len(self.failed)}"]
        out += [f"  {where}: {reason}" for where, reason in self.failed]
        return out


@dataclass(frozen=True)
class Row:
    where: str
    fields: dict[str, str]
    image: bytes | None
    problem: str | None = None


def read_catalog(csv_path: Path, images: Path) -> Iterator[Row]:
    """Rows of a catalog CSV with their photo bytes; a row that cannot be read says why."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(missing)}")
        for line, record in enumerate(reader, start=2):
            where = f"line {line}"
            fields = {k: (v or "") for k, v in record.items() if k and k != "image"}
            name = (record.get("image") or "").strip()
            path = (images / name).resolve()
            if not name or not path.is_relative_to(images.resolve()):
                yield Row(where, fields, None, f"image {name!r} is not a file inside {images}")
                continue
            try:
                yield Row(where, fields, path.read_bytes())
            except OSError as error:
                yield Row(where, fields, None, f"cannot read image {name!r}: {error.strerror}")


async def load_rows(services: Services, rows: Iterable[Row], total: int | None = None) -> IngestSummary:
    """Create items through the same path as uploads; a bad row is reported, never fatal."""
    summary = IngestSummary()
    for row in tqdm(rows, total=total, unit="item", desc="ingest"):
        if row.image is None:
            summary.failed.append((row.where, row.problem or "no image"))
            continue
        try:
            fields = parse_fields(row.fields)
            await create_item(services, fields, row.image)
        except ApiError as error:
            if error.code == "duplicate_image":
                summary.skipped += 1
            else:
                summary.failed.append((row.where, error.message))
            continue
        summary.loaded += 1
    return summary


async def load_demo(services: Services, count: int) -> IngestSummary:
    images = await asyncio.to_thread(lambda: list(demo_items(count)))
    rows = (Row(f"demo item {i + 1}", item.fields, item.image) for i, item in enumerate(images))
    return await load_rows(services, rows, total=count)
