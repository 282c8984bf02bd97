"""Bulk loading: a catalog CSV with a folder of photos, or the synthetic demo catalog.

Rows stream: a row is read, then its photo, the item is created through the upload path, and
both are dropped before the next row is read. Memory is that of one row and one photo whatever
the file holds, and items get ids in the file's order. A bad row is reported with its line and
why, and never stops the rest.
"""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import asyncpg
from tqdm import tqdm

from webapp.http.errors import ApiError
from webapp.items.demo import demo_items
from webapp.items.service import ItemFields, create_item, parse_fields
from webapp.services import Services

CSV_COLUMNS = ("title", "price", "image")
# The columns a catalog may have: the image, and the fields of a listing as the API takes them.
KNOWN_COLUMNS = ("image", *ItemFields.model_fields)
# The longest row the schema can accept is a few tens of KB (a 5,000-character description, in
# UTF-8, and short fields); a longer line or row is refused before csv or pydantic hold it.
MAX_ROW_BYTES = 64 * 1024


class RowError(Exception):
    """Why one row cannot be loaded: a machine ``kind`` (counted in the summary) and a message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class IngestSummary:
    """Counts of one load, failures by kind; each row's own report is printed as it happens."""

    loaded: int = 0
    skipped: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def lines(self) -> list[str]:
        out = [f"loaded {self.loaded}, skipped {self.skipped} (already listed), failed {self.failed}"]
        if self.failures:
            out.append("failed by reason: " + ", ".join(f"{k} {n}" for k, n in sorted(self.failures.items())))
        return out


@dataclass(frozen=True)
class Row:
    """One listing to load; ``read_photo(max_bytes)`` reads its photo (at most ``max_bytes + 1``
    bytes, so an oversized one is refused by the upload path without being read whole)."""

    where: str
    fields: dict[str, str]
    read_photo: Callable[[int], bytes]
    problem: RowError | None = None


class _Lines:
    """A binary file's lines as text for csv.reader, each row at most ``limit`` bytes.

    A line or row over the limit, or one that is not UTF-8, raises RowError from ``__next__``:
    csv.reader passes it on and reads on from the next line when called again.
    """

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self.handle = handle
        self.limit = limit
        self.number = 0  # of the last line read
        self.row_bytes = 0

    def __iter__(self) -> _Lines:
        return self

    def start_row(self) -> None:
        self.row_bytes = 0

    def __next__(self) -> str:
        raw = self.handle.readline(self.limit + 1)
        if not raw:
            raise StopIteration
        self.number += 1
        if len(raw) > self.limit:
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, never holding it
                raw = self.handle.readline(self.limit)
            raise RowError("row_too_long", f"the line is longer than {self.limit} bytes")
        self.row_bytes += len(raw)
        if self.row_bytes > self.limit:
            raise RowError("row_too_long", f"the row is longer than {self.limit} bytes")
        try:
            return raw.decode("utf-8-sig" if self.number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise RowError("not_utf8", "the line is not UTF-8 text") from None


class CatalogFile:
    """A catalog CSV, read one row at a time. Opening it checks the header (ValueError)."""

    def __init__(self, csv_path: Path, images: Path, max_row_bytes: int = MAX_ROW_BYTES) -> None:
        self.images = images.resolve()
        self._handle = csv_path.open("rb")
        self._lines = _Lines(self._handle, max_row_bytes)
        self._reader = csv.reader(self._lines)
        try:
            self.columns = self._header(csv_path)
        except BaseException:
            self._handle.close()
            raise

    def _header(self, csv_path: Path) -> list[str]:
        try:
            columns = [c.strip() for c in next(self._reader)]
        except StopIteration:
            raise ValueError(f"{csv_path} is empty; its first line must name the columns") from None
        except (RowError, csv.Error) as error:
            raise ValueError(f"{csv_path}: the header line cannot be read ({error})") from None
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(missing)}")
        unknown = [c for c in columns if c not in KNOWN_COLUMNS]
        if unknown:
            raise ValueError(
                f"{csv_path} has column(s) a listing does not have: {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(KNOWN_COLUMNS)})"
            )
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"{csv_path} names the column(s) {', '.join(repeated)} more than once")
        return columns

    def rows(self) -> Iterator[Row]:
        """Each row with a reader for its photo; a row that cannot be read says why."""
        while True:
            start = self._lines.number + 1
            self._lines.start_row()
            try:
                record = next(self._reader)
            except StopIteration:
                return
            except RowError as error:
                yield self._bad(self._lines.number, error)
                continue
            except csv.Error as error:
                yield self._bad(start, RowError("not_csv", f"not valid CSV: {error}"))
                continue
            if not record:
                continue  # a blank line
            yield self._row(f"line {start}", record)

    def _bad(self, line: int, error: RowError) -> Row:
        return Row(f"line {line}", {}, _no_photo, error)

    def _row(self, where: str, record: list[str]) -> Row:
        extra = record[len(self.columns) :]
        if any(value.strip() for value in extra):
            count = f"the row has {len(record)} fields; the header names {len(self.columns)}"
            return Row(where, {}, _no_photo, RowError("not_csv", count))
        values = dict(zip(self.columns, record, strict=False))
        name = values.pop("image", "").strip()
        path = (self.images / name).resolve()
        if not name:
            return Row(where, values, _no_photo, RowError("missing_image", "the row names no image"))
        if not path.is_relative_to(self.images):
            problem = RowError("missing_image", f"image {name!r} is not a file inside {self.images}")
            return Row(where, values, _no_photo, problem)
        return Row(where, values, lambda max_bytes: _read_photo(path, name, max_bytes))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CatalogFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _no_photo(max_bytes: int) -> bytes:
    raise RowError("missing_image", "no image")


def _read_photo(path: Path, name: str, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(max_bytes + 1)
    except OSError as error:
        raise RowError("missing_image", f"cannot read image {name!r}: {error.strerror}") from None


def _given(image: bytes) -> Callable[[int], bytes]:
    return lambda max_bytes: image


def _print(line: str) -> None:
    tqdm.write(line)  # above the progress bar, on stdout


async def load_rows(
    services: Services,
    rows: Iterator[Row],
    summary: IngestSummary | None = None,
    report: Callable[[str], None] = _print,
    total: int | None = None,
) -> IngestSummary:
    """Create items through the same path as uploads, one row at a time in the file's order, and
    report each row that is not loaded. ``summary`` is filled as rows finish, so a caller can
    print it even when an outage stops the load part way."""
    summary = summary if summary is not None else IngestSummary()
    with tqdm(total=total, unit="item", desc="ingest") as progress:
        # The file is read in a thread: a slow disk never stalls the pool's and storage's I/O.
        while (row := await asyncio.to_thread(next, rows, None)) is not None:
            try:
                await _load_one(services, row)
            except RowError as error:
                summary.failures[error.kind] += 1
                report(f"  {row.where}: {error.message}")
            except ApiError as error:
                if error.code == "duplicate_image":
                    summary.skipped += 1
                    existing = (error.details or {}).get("existing_id")
                    report(f"  {row.where}: skipped, the photo is already listed as item {existing}")
                else:
                    summary.failures[error.code] += 1
                    report(f"  {row.where}: {error.message}")
            else:
                summary.loaded += 1
            progress.update()
    return summary


async def _load_one(services: Services, row: Row) -> None:
    if row.problem is not None:
        raise row.problem
    fields = parse_fields(row.fields)  # the API's own schema, before the photo is read
    data = await asyncio.to_thread(row.read_photo, services.settings.storage.max_image_bytes)
    try:
        await create_item(services, fields, data)
    except asyncpg.DataError as error:
        # A value the schema let through but the database cannot store is this row's fault.
        raise RowError("not_storable", f"the database refused the row: {error}") from None


async def load_demo(services: Services, count: int, summary: IngestSummary | None = None) -> IngestSummary:
    """The synthetic catalog, drawn one garment at a time as the load asks for it."""

    def drawn() -> Iterator[Row]:
        for index, item in enumerate(demo_items(count)):
            yield Row(f"demo item {index + 1}", item.fields, _given(item.image))

    return await load_rows(services, drawn(), summary, total=count)
