"""A synthetic second-hand catalog: clustered vectors, realistic facets, loaded with COPY.

Real CLIP embeddings of garment photos cluster (by garment type, colour, style), and uniform
noise is a worst case for HNSW recall (0.08 at pgvector's defaults, measured here), so the vectors are Gaussian
clusters: each item is a unit cluster centre plus isotropic noise of total norm ~``noise``,
normalised. Categories follow the clusters (each cluster has a dominant category that 70% of
its items carry) so that a category filter cuts across the vector space the way a real one
does, while keeping the overall shares below: "dresses" selects ~10% of the catalog and
"jumpsuits" ~1%.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from webapp.adapters.db import migrate, vector_index_name
from webapp.catalog.garment import CONDITIONS as APP_CONDITIONS
from webapp.catalog.version import bump_catalog_version
from webapp.config import DatabaseSettings
from webapp.search.graphs import ensure_vector_index
from webapp.search.repo import VectorQueries

# Share of the catalog per category (sums to 1). FILTER_10 and FILTER_1 are the filter values
# the benchmark uses for its 10% and 1% selectivity figures.
CATEGORIES: dict[str, float] = {
    "tops": 0.18,
    "jeans": 0.14,
    "dresses": 0.10,
    "jackets": 0.10,
    "knitwear": 0.09,
    "shoes": 0.09,
    "skirts": 0.07,
    "coats": 0.06,
    "trousers": 0.06,
    "shirts": 0.05,
    "bags": 0.04,
    "jumpsuits": 0.01,
    "accessories": 0.01,
}
FILTER_10 = "dresses"
FILTER_1 = "jumpsuits"

GARMENTS: dict[str, list[str]] = {
    "tops": ["t-shirt", "tank top", "blouse", "crop top", "camisole", "polo shirt"],
    "jeans": ["straight jeans", "skinny jeans", "wide-leg jeans", "bootcut jeans", "mom jeans", "501 jeans"],
    "dresses": ["midi dress", "maxi dress", "slip dress", "wrap dress", "shirt dress", "mini dress"],
    "jackets": ["denim jacket", "bomber jacket", "leather jacket", "blazer", "puffer jacket"],
    "knitwear": ["jumper", "cardigan", "turtleneck", "sweater vest", "cable knit sweater"],
    "shoes": ["trainers", "ankle boots", "loafers", "sandals", "chelsea boots", "heels"],
    "skirts": ["mini skirt", "midi skirt", "pleated skirt", "denim skirt", "maxi skirt"],
    "coats": ["trench coat", "wool coat", "parka", "peacoat", "raincoat"],
    "trousers": ["cargo trousers", "chinos", "tailored trousers", "joggers", "linen trousers"],
    "shirts": ["oxford shirt", "flannel shirt", "linen shirt", "denim shirt", "hawaiian shirt"],
    "bags": ["tote bag", "crossbody bag", "backpack", "shoulder bag", "clutch"],
    "jumpsuits": ["jumpsuit", "boiler suit", "playsuit", "dungarees"],
    "accessories": ["scarf", "belt", "beanie", "bucket hat", "sunglasses"],
}
BRANDS = [
    "Zara", "H&M", "Levi's", "Uniqlo", "Mango", "Nike", "Adidas", "COS", "Arket", "& Other Stories",
    "Ralph Lauren", "Tommy Hilfiger", "Carhartt", "Patagonia", "The North Face", "Barbour", "Massimo Dutti",
    "Weekday", "Monki", "Topshop", "Reformation", "Ganni", "Acne Studios", "AllSaints", "Whistles",
    "Boden", "Gap", "Lacoste", "Dr. Martens", "Converse", "Vans", "New Balance", "Burberry", "Gucci",
    "Prada", "Sezane", "Everlane", "Free People", "Diesel", "Wrangler",
]  # fmt: skip
COLOURS = [
    "black", "white", "blue", "navy", "grey", "beige", "brown", "green", "red", "pink",
    "cream", "khaki", "burgundy", "yellow", "purple", "orange",
]  # fmt: skip
COLOUR_WEIGHTS = [16, 12, 12, 8, 8, 7, 6, 6, 5, 5, 4, 3, 3, 2, 2, 1]
# The app's conditions, best first, with the shares a resale catalog holds them in.
CONDITIONS = dict(zip(APP_CONDITIONS, (0.10, 0.25, 0.35, 0.25, 0.05), strict=True))
STYLES = ["vintage", "oversized", "cropped", "relaxed", "fitted", "classic", "retro", "minimal", "y2k", "boho"]
SIZES_LETTER = ["XS", "S", "M", "L", "XL", "XXL"]
SIZE_LETTER_WEIGHTS = [8, 22, 30, 23, 12, 5]
SIZES_WAIST = ["W26", "W27", "W28", "W29", "W30", "W31", "W32", "W33", "W34", "W36"]
SIZES_SHOE = ["EU 36", "EU 37", "EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43", "EU 44", "EU 45"]


@dataclass(frozen=True)
class CatalogSpec:
    """Everything that determines the generated catalog; a stored catalog is reused only if equal."""

    items: int
    dim: int = 512
    clusters: int = 2000
    noise: float = 0.6
    category_affinity: float = 0.7
    seed: int = 20260101
    generator: str = "bench.catalog v3"  # v3: the app's condition values

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _weights(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return np.asarray(array / array.sum(), dtype=np.float64)


def cluster_centres(spec: CatalogSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 1])
    centres = rng.standard_normal((spec.clusters, spec.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return np.asarray(centres, dtype=np.float32)


def noisy(centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around ``centres``: noise of expected norm ``noise`` per vector."""
    dim = centres.shape[1]
    out = centres + rng.standard_normal(centres.shape, dtype=np.float32) * np.float32(noise / np.sqrt(dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out, dtype=np.float32)


@dataclass
class Catalog:
    vectors: np.ndarray  # (items, dim) float32, unit rows; row i is item id i + 1
    rows: list[tuple[Any, ...]]  # items rows in ITEM_COLUMNS order


ITEM_COLUMNS = (
    "id", "title", "description", "brand", "category", "size", "colour", "condition", "price",
    "currency", "status", "image_key", "image_sha256", "created_at", "updated_at",
)  # fmt: skip


def generate(spec: CatalogSpec) -> Catalog:
    """The catalog for ``spec``, deterministically."""
    rng = np.random.default_rng([spec.seed, 2])
    n = spec.items
    centres = cluster_centres(spec)
    cluster = rng.integers(0, spec.clusters, n)
    vectors = np.empty((n, spec.dim), dtype=np.float32)
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        vectors[start:stop] = noisy(centres[cluster[start:stop]], spec.noise, rng)

    names = list(CATEGORIES)
    shares = _weights(list(CATEGORIES.values()))
    # Dominant categories by quota, not by draw: the shares hold for any seed.
    quota = np.floor(shares * spec.clusters).astype(int)
    quota[np.argsort(shares * spec.clusters - quota)[::-1][: spec.clusters - quota.sum()]] += 1
    dominant = rng.permutation(np.repeat(np.arange(len(names)), quota))
    own = rng.random(n) < spec.category_affinity
    category = np.where(own, dominant[cluster], rng.choice(len(names), n, p=shares))

    brand_w = _weights([1 / (rank + 1) ** 1.1 for rank in range(len(BRANDS))])
    brand = rng.choice(len(BRANDS), n, p=brand_w)
    colour = rng.choice(len(COLOURS), n, p=_weights([float(w) for w in COLOUR_WEIGHTS]))
    cond_names = list(CONDITIONS)
    condition = rng.choice(len(cond_names), n, p=_weights(list(CONDITIONS.values())))
    style = rng.integers(0, len(STYLES), n)
    garment_pick = rng.integers(0, 1000, n)
    letter = rng.choice(len(SIZES_LETTER), n, p=_weights([float(w) for w in SIZE_LETTER_WEIGHTS]))
    waist = rng.integers(0, len(SIZES_WAIST), n)
    shoe = rng.integers(0, len(SIZES_SHOE), n)
    price_cents = np.maximum(300, np.round(rng.lognormal(np.log(2800), 0.8, n))).astype(np.int64)
    age_s = rng.uniform(0, 365 * 24 * 3600, n)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        cat = names[category[i]]
        garments = GARMENTS[cat]
        garment = garments[garment_pick[i] % len(garments)]
        if cat in ("jeans", "trousers"):
            size = SIZES_WAIST[waist[i]]
        elif cat == "shoes":
            size = SIZES_SHOE[shoe[i]]
        elif cat in ("bags", "accessories"):
            size = "one size"
        else:
            size = SIZES_LETTER[letter[i]]
        col = COLOURS[colour[i]]
        brand_name = BRANDS[brand[i]]
        cond = cond_names[condition[i]]
        title = f"{brand_name} {STYLES[style[i]]} {col} {garment}"
        said = cond.replace("_", " ").capitalize()
        description = f"{said} {col} {garment} by {brand_name}, size {size}. Pre-owned."
        created = now - dt.timedelta(seconds=float(age_s[i]))
        item_id = i + 1
        rows.append(
            (
                item_id,
                title,
                description,
                brand_name,
                cat,
                size,
                col,
                cond,
                Decimal(int(price_cents[i])) / 100,
                "USD",
                "ready",
                f"bench/{item_id}.jpg",
                hashlib.sha256(f"bench-item-{spec.seed}-{item_id}".encode()).hexdigest(),
                created,
                created,
            )
        )
    return Catalog(vectors, rows)


_MARKER = "bench_catalog"


async def stored_spec(connection: asyncpg.Connection) -> str | None:
    exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", _MARKER)
    if not exists:
        return None
    value: str | None = await connection.fetchval(f"SELECT spec FROM {_MARKER} WHERE id = 1")
    return value


async def _is_loaded(connection: asyncpg.Connection, spec: CatalogSpec, model_key: str) -> bool:
    if await stored_spec(connection) != spec.to_json():
        return False
    items = await connection.fetchval("SELECT count(*) FROM items WHERE status = 'ready'")
    vectors = await connection.fetchval("SELECT count(*) FROM item_embeddings WHERE model_key = $1", model_key)
    return bool(items == spec.items and vectors == spec.items)


def _chunks(rows: list[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def prepare(dsn: str, spec: CatalogSpec, model_key: str, *, log: Any = print) -> dict[str, Any]:
    """Migrate, then load the catalog unless an identical one is stored, then build the index.

    Returns what was done and how long each step took.
    """
    report: dict[str, Any] = {"spec": json.loads(spec.to_json()), "model_key": model_key}
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        report["migrations_applied"] = await migrate(connection)
        await register_vector(connection)
        if await _is_loaded(connection, spec, model_key):
            report["reused"] = True
            log(f"catalog: reusing the stored {spec.items:,}-item catalog")
        else:
            report["reused"] = False
            await _load(connection, spec, model_key, report, log)
        index_started = time.perf_counter()
        # HNSW builds far faster when the graph fits in maintenance memory (~400 MB at 100k x 512
        # in float32, about half in halfvec); 2.5 kB an item leaves room at any size.
        work_mem_mb = max(1024, spec.items * 2560 // 2**20)
        await connection.execute(f"SET maintenance_work_mem = '{work_mem_mb}MB'")
        name = vector_index_name(model_key)
        built = not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if built:
            log(f"catalog: building the HNSW index over {spec.items:,} x {spec.dim} (about a minute per 100k)")
        db = DatabaseSettings()
        await ensure_vector_index(
            connection, model_key, spec.dim, m=db.hnsw_m, ef_construction=db.hnsw_ef_construction
        )
        report["index_built_s"] = round(time.perf_counter() - index_started, 1) if built else None
        # The per-category and per-colour partial indexes the app builds at start-up
        # (webapp.search.graphs).
        queries = VectorQueries(model_key, spec.dim, db)
        before = set(await queries.graphs.load(connection))
        started_categories = time.perf_counter()
        log("catalog: building the per-category and per-colour partial HNSW indexes that are missing")
        graphs = await queries.graphs.ensure(connection)
        missing = set(graphs) - before
        report["category_indexes"] = sorted(queries.graphs.categories)
        report["colour_indexes"] = sorted(value for column, value in graphs if column == "colour")
        report["category_indexes_built_s"] = (
            round(time.perf_counter() - started_categories, 1) if missing else None
        )
        report["table_bytes"] = await connection.fetchval(
            "SELECT pg_total_relation_size('items') + pg_total_relation_size('item_embeddings')"
        )
        report["index_bytes"] = await connection.fetchval(
            """SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index
               WHERE indrelid = 'item_embeddings'::regclass AND indexrelid::regclass::text LIKE $1""",
            vector_index_name(model_key) + "%",
        )
        await connection.execute("ANALYZE items")
        await connection.execute("ANALYZE item_embeddings")
        report["prepare_s"] = round(time.perf_counter() - started, 1)
        shares = await connection.fetch(
            "SELECT category, count(*)::float / sum(count(*)) OVER () AS share FROM items GROUP BY category"
        )
        report["category_shares"] = {r["category"]: round(r["share"], 4) for r in shares}
    finally:
        await connection.close()
    return report


async def _load(
    connection: asyncpg.Connection, spec: CatalogSpec, model_key: str, report: dict[str, Any], log: Any
) -> None:
    log(f"catalog: generating {spec.items:,} items")
    started = time.perf_counter()
    catalog = generate(spec)
    report["generate_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    # A fresh load: index dropped (rebuilt once at the end, far faster than insert by insert).
    await connection.execute(f"DROP INDEX IF EXISTS {vector_index_name(model_key)}")
    await connection.execute(f"DROP TABLE IF EXISTS {_MARKER}")
    await connection.execute("TRUNCATE items, item_embeddings, embedding_jobs RESTART IDENTITY CASCADE")
    for chunk in _chunks(catalog.rows, 20_000):
        await connection.copy_records_to_table("items", records=chunk, columns=list(ITEM_COLUMNS))
    await connection.execute("SELECT setval(pg_get_serial_sequence('items', 'id'), $1)", spec.items)
    report["copy_items_s"] = round(time.perf_counter() - started, 1)
    log(f"catalog: {spec.items:,} items copied in {report['copy_items_s']} s; copying vectors")
    started = time.perf_counter()
    vectors = catalog.vectors
    for start in range(0, spec.items, 10_000):
        stop = min(spec.items, start + 10_000)
        records = [(i + 1, model_key, vectors[i]) for i in range(start, stop)]
        await connection.copy_records_to_table(
            "item_embeddings", records=records, columns=["item_id", "model_key", "embedding"]
        )
    report["copy_vectors_s"] = round(time.perf_counter() - started, 1)
    log(f"catalog: vectors copied in {report['copy_vectors_s']} s")
    # Result caches are keyed by the catalog version; a new catalog is a new version.
    await bump_catalog_version(connection)
    await connection.execute(f"CREATE TABLE {_MARKER} (id integer PRIMARY KEY, spec text NOT NULL)")
    await connection.execute(f"INSERT INTO {_MARKER} VALUES (1, $1)", spec.to_json())


async def read_vectors(
    connection: asyncpg.Connection, model_key: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every ready item's stored vector (ids, matrix, categories), as the index sees them."""
    rows = await connection.fetch(
        """SELECT e.item_id, e.embedding, i.category
           FROM item_embeddings e JOIN items i ON i.id = e.item_id
           WHERE e.model_key = $1 AND i.status = 'ready' ORDER BY e.item_id""",
        model_key,
    )
    ids = np.fromiter((r["item_id"] for r in rows), dtype=np.int64, count=len(rows))
    vectors = [_array(r["embedding"]) for r in rows]
    matrix = np.stack(vectors) if vectors else np.empty((0, 0), dtype=np.float32)
    categories = [r["category"] for r in rows]
    return ids, matrix, categories


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "to_numpy"):  # pgvector.Vector
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)
