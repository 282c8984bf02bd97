"""Catalog files for imports: a Shopify product export (either header style) or a plain
catalog with an ``external_id`` column, each read as listings with their photo sources."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from webapp.imports.shopify import Style, header_style, products

# The listing fields a plain catalog may name (the API's own), besides external_id and photos.
FIELD_COLUMNS = (
    "title",
    "description",
    "brand",
    "category",
    "size",
    "colour",
    "condition",
    "price",
    "currency",
)
PHOTO_COLUMNS = ("images", "image")


@dataclass
class Listing:
    """One listing to import: its shop id, fields, photo sources in order, and whether it is for sale."""

    external_id: str
    where: str
    fields: dict[str, str]
    photos: list[str]
    listed: bool = True
    product_id: int | None = None
    problem: str | None = None


def is_import_catalog(path: Path) -> bool:
    """Whether the file is for this importer (a Shopify export, or a catalog naming external ids)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    columns = [c.strip() for c in header]
    return header_style(columns) is not None or "external_id" in columns


class ImportCatalog:
    """An import file, opened; ``kind`` says which format, ``listings()`` reads it once, streaming."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO = path.open(newline="", encoding="utf-8-sig")
        try:
            self._reader = csv.reader(self._handle)
            self.columns = [c.strip() for c in next(self._reader, [])]
            self.style: Style | None = header_style(self.columns)
            self.kind = f"Shopify export ({self.style.name} columns)" if self.style else "catalog"
            if self.style is None:
                self._check_plain()
        except BaseException:
            self._handle.close()
            raise

    def _check_plain(self) -> None:
        if "external_id" not in self.columns:
            raise ValueError(f"{self.path} is neither a Shopify product export nor a catalog with external_id")
        for needed in ("title", "price"):
            if needed not in self.columns:
                raise ValueError(f"{self.path} lacks the column {needed}")
        unknown = [c for c in self.columns if c not in (*FIELD_COLUMNS, *PHOTO_COLUMNS, "external_id")]
        if unknown:
            raise ValueError(
                f"{self.path} has column(s) a listing does not have: {', '.join(map(repr, unknown))}"
            )

    def _rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            line = self._reader.line_num + 1
            try:
                record = next(self._reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield line, {"\0error": f"not valid CSV: {error}"}
                continue
            except UnicodeDecodeError:
                yield line, {"\0error": "the file is not UTF-8 text from here on"}
                return
            if record:
                yield line, dict(zip(self.columns, record, strict=False))

    def listings(self) -> Iterator[Listing]:
        if self.style is not None:
            for product in products(self._rows(), self.style):
                yield Listing(product.handle, product.where, product.fields, product.photos, product.listed,
                              product.product_id, product.problem)  # fmt: skip
            return
        for line, row in self._rows():
            where = f"line {line}"
            if "\0error" in row:
                yield Listing("", where, {}, [], problem=row["\0error"])
                continue
            photos = [p.strip() for p in row.get("images", "").split("|") if p.strip()]
            if not photos and row.get("image", "").strip():
                photos = [row["image"].strip()]
            fields = {k: v for k, v in row.items() if k in FIELD_COLUMNS}
            external_id = row.get("external_id", "").strip()
            problem = None if external_id else "the row has no external_id"
            if not photos:
                problem = problem or "the row names no photo (images or image)"
            yield Listing(external_id, where, fields, photos, problem=problem)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ImportCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
