"""`prethrift ingest` streams the catalog: each bad row is reported with its line and why, the rest
load, the summary is always printed, and memory stays that of a row or two, however many
rows the file has and whatever their photos weigh."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from tests.webapp.conftest import photo, service_env
from tests.webapp.helpers import items_in
from webapp.config import Settings

COLUMNS = ["title", "price", "image", "description"]


def write_catalog(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def ingest(settings: Settings, catalog: Path, images: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `prethrift ingest` as a user would; also return the process's peak RSS in bytes,
    sampled from outside with psutil."""
    process = subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "ingest", str(catalog), "--images", str(images)],
        env=service_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        watched = psutil.Process(process.pid)
        while not done.is_set():
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        done.set()
        sampler.join(5)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), peak


def line_of(output: str, number: int) -> str:
    """The report line for CSV line ``number`` (exactly one)."""
    found = [line for line in output.splitlines() if line.strip().startswith(f"line {number}:")]
    assert len(found) == 1, (number, output)
    return found[0]


async def test_bad_rows_are_reported_by_line_and_the_good_ones_load(settings: Settings, tmp_path: Path) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    for seed in range(4):
        (images / f"p{seed}.jpg").write_bytes(photo(seed))
    catalog = write_catalog(
        tmp_path / "catalog.csv",
        [
            {"title": "Blue jeans", "price": "20", "image": "p0.jpg"},  # line 2
            {"title": "Priced in words", "price": "twelve", "image": "p1.jpg"},  # line 3
            {"title": "Astronomical", "price": "1e999999999", "image": "p1.jpg"},  # line 4
            {"title": "T" * 300, "price": "5", "image": "p1.jpg"},  # line 5
            {"title": "No photo", "price": "5", "image": "missing.jpg"},  # line 6
            # Longer than any field the schema allows, and than Python's csv module reads.
            {"title": "Essay", "price": "5", "image": "p1.jpg", "description": "x" * 300_000},  # line 7
            {"title": "Red dress", "price": "35.50", "image": "p1.jpg"},  # line 8
            {"title": "Blue jeans again", "price": "20", "image": "p0.jpg"},  # line 9
            {"title": "Wool coat", "price": "80", "image": "p2.jpg"},  # line 10
        ],
    )
    result, _ = ingest(settings, catalog, images)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode != 0, output  # some rows failed
    assert "loaded 3, skipped 1 (already listed), failed 5" in result.stdout, output
    assert "price" in line_of(result.stdout, 3)
    assert "price" in line_of(result.stdout, 4)
    assert "title" in line_of(result.stdout, 5) and "200 characters" in line_of(result.stdout, 5)
    assert "cannot read image 'missing.jpg'" in line_of(result.stdout, 6)
    assert "longer than" in line_of(result.stdout, 7)
    assert "already listed" in line_of(result.stdout, 9)
    # The summary names the reasons, not only the count.
    assert "invalid_fields 3" in result.stdout, result.stdout
    titles = sorted(title for title, _ in await items_in(settings))
    assert titles == ["Blue jeans", "Red dress", "Wool coat"]


def noisy_png(seed: int, side: int = 1300) -> bytes:
    """About 5 MB: random pixels do not compress."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


async def test_memory_stays_bounded_whatever_the_row_count(settings: Settings, tmp_path: Path) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    data = noisy_png(1)
    (images / "big.png").write_bytes(data)
    rows = 60
    one = write_catalog(tmp_path / "one.csv", [{"title": "Big photo", "price": "5", "image": "big.png"}])
    many = write_catalog(
        tmp_path / "many.csv",
        [{"title": f"Big photo {i}", "price": "5", "image": "big.png"} for i in range(rows)],
    )

    first, peak_one = ingest(settings, one, images)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "loaded 1, skipped 0" in first.stdout
    second, peak_many = ingest(settings, many, images)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"loaded 0, skipped {rows}" in second.stdout
    # Holding every row's photo at once would grow by rows x photo; a
    # streaming ingest grows by a few photos at most, whatever the row count.
    growth = peak_many - peak_one
    print(f"peak RSS: 1 row {peak_one / 2**20:.0f} MiB, {rows} rows {peak_many / 2**20:.0f} MiB")
    assert growth < rows * len(data) / 3, f"grew {growth / 2**20:.0f} MiB over the one-row run"
