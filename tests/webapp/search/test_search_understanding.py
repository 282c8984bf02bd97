"""Search that understands shoppers, against the real PostgreSQL: constraints in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import services_of
from tests.webapp.helpers import get, seed_catalog
from webapp.catalog.filters import SearchFilters
from webapp.search.service import keyword_ranking

DATA = Path(__file__).resolve().parents[2] / "data"
CATALOG: list[dict[str, Any]] = json.loads((DATA / "catalog.json").read_text())


@pytest.fixture(name="catalog")
async def _catalog(app: Quart) -> dict[str, int]:
    """The fixed catalog in tests/data/catalog.json, by title."""
    ids = await seed_catalog(app, CATALOG)
    return {row["title"]: item_id for row, item_id in zip(CATALOG, ids, strict=True)}


async def test_constraints_in_the_query_become_filters(client: QuartClient, catalog: dict[str, int]) -> None:
    page = await get(client, q="denim jacket size M under $40", limit=50)
    assert page["interpreted"] == {"q": "denim jacket", "filters": {"size": "M", "price_max": "40"}}
    assert page["items"], "the constraints emptied the results"
    assert all(i["size"] == "M" and float(i["price"]) <= 40 for i in page["items"])
    assert page["items"][0]["title"] == "Faded denim jacket"
    # Without parsing the same words find other sizes and dearer items.
    raw = await get(client, q="denim jacket size M under $40", parse="false", limit=50)
    assert raw["interpreted"] is None
    assert any(i["size"] != "M" or float(i["price"]) > 40 for i in raw["items"])


async def test_parameters_win_and_brand_names_are_not_sizes(
    client: QuartClient, catalog: dict[str, int]
) -> None:
    page = await get(client, q="sweater size M", size="L", mode="keyword")
    assert page["interpreted"] == {"q": "sweater", "filters": {}}
    assert page["items"] and {i["size"] for i in page["items"]} == {"L"}
    page = await get(client, q="M&S sweater", mode="keyword")
    assert page["interpreted"] == {"q": "sweater", "filters": {"brand": "Marks & Spencer"}}
    assert {i["brand"] for i in page["items"]} == {"Marks & Spencer"}
    # A query that names nothing the parser reads is searched as typed.
    assert (await get(client, q="the 90s jacket"))["interpreted"] is None


async def test_a_query_of_constraints_only_browses_the_filtered_catalog(
    client: QuartClient, catalog: dict[str, int]
) -> None:
    page = await get(client, q="navy size M", limit=50)
    assert page["interpreted"] == {"q": "", "filters": {"colour": "navy", "size": "M"}}
    expected = {row["title"] for row in CATALOG if row["colour"] == "navy" and row["size"] == "M"}
    assert {i["title"] for i in page["items"]} == expected


def keyword_cases() -> list[tuple[str, set[str]]]:
    cases = []
    for line in (DATA / "keyword_queries.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            query, titles = (part.strip() for part in line.split("|"))
            cases.append((query, {t.strip() for t in titles.split(";")}))
    return cases


async def test_keyword_search_forgives_typos_prefixes_synonyms_and_extra_words(
    client: QuartClient, catalog: dict[str, int]
) -> None:
    cases = keyword_cases()
    assert len(cases) >= 150
    titles = set(catalog)
    assert all(expected <= titles for _, expected in cases), "a label names no catalog item"
    misses = []
    for query, expected in cases:
        page = await get(client, q=query, mode="keyword", limit=5)
        if not expected & {i["title"] for i in page["items"]}:
            misses.append((query, [i["title"] for i in page["items"]]))
    success = 1 - len(misses) / len(cases)
    print(f"keyword success@5 {success:.3f} on {len(cases)} queries; misses: {misses}")
    assert success >= 0.95, misses


async def test_exact_words_still_rank_first_and_one_unknown_word_does_not_empty(
    client: QuartClient, catalog: dict[str, int]
) -> None:
    page = await get(client, q="levis 501", mode="keyword", parse="false", limit=5)
    assert page["items"][0]["title"] == "Levi's 501 original jeans"
    page = await get(client, q="denim jacket", mode="keyword", limit=5)
    assert page["items"][0]["title"] == "Faded denim jacket"
    page = await get(client, q="faded denim jacket zzqx", mode="keyword", limit=5)
    assert page["items"][0]["title"] == "Faded denim jacket"
    # A typo never outranks the word as typed: "sweater" items before "sweaters"-like corrections.
    page = await get(client, q="wool jumper", mode="keyword", limit=5)
    assert page["items"][0]["title"] == "Merino wool sweater"


def expected_counts(field: str, keep: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in CATALOG:
        if row[field] is not None and keep(row):
            counts[row[field]] = counts.get(row[field], 0) + 1
    return counts


async def test_browsing_facets_are_exact_and_disjunctive(client: QuartClient, catalog: dict[str, int]) -> None:
    page = await get(client, facets="all", category="outerwear", size="M")
    assert page["facets_scope"] == "exact"
    facets = {name: values for name, values in page["facets"].items() if name != "price"}
    in_size = {v["value"]: v["count"] for v in facets["size"]}
    # Sizes are counted as if no size were chosen: M and the others among outerwear.
    assert in_size == expected_counts("size", lambda r: r["category"] == "outerwear")
    in_category = {v["value"]: v["count"] for v in facets["category"]}
    assert in_category == expected_counts("category", lambda r: r["size"] == "M")
    brands = {v["value"]: v["count"] for v in facets["brand"]}
    assert brands == expected_counts("brand", lambda r: r["size"] == "M" and r["category"] == "outerwear")
    buckets = page["facets"]["price"]
    chosen = [r for r in CATALOG if r["size"] == "M" and r["category"] == "outerwear"]
    assert sum(b["count"] for b in buckets) == len(chosen)
    assert buckets[0]["min"] == "0" or all(float(r["price"]) >= 20 for r in chosen)
    # Counts follow the values shown: sorted by count.
    assert [v["count"] for v in facets["size"]] == sorted(in_size.values(), reverse=True)


async def test_query_facets_count_the_candidates(client: QuartClient, catalog: dict[str, int]) -> None:
    page = await get(client, q="sneakers", mode="keyword", facets="brand,size", limit=50)
    assert page["facets_scope"] == "candidates"
    brands = {v["value"]: v["count"] for v in page["facets"]["brand"]}
    assert brands == expected_counts("brand", lambda r: "sneakers" in r["title"].lower())
    assert "price" not in page["facets"]
    # Choosing a brand keeps the other brands' counts (disjunctive), and narrows the sizes.
    chosen = await get(client, q="sneakers", mode="keyword", facets="brand,size", brand="Nike", limit=50)
    assert {v["value"]: v["count"] for v in chosen["facets"]["brand"]} == brands
    sizes = {v["value"]: v["count"] for v in chosen["facets"]["size"]}
    assert sizes == expected_counts("size", lambda r: "sneakers" in r["title"].lower() and r["brand"] == "Nike")


@pytest.mark.parametrize("facets", ["sizes", "all,brand", "", "price;brand"])
async def test_unknown_facets_are_a_clear_error(client: QuartClient, facets: str) -> None:
    response = await client.get("/api/search", query_string={"facets": facets})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["error"]["code"] == "invalid_parameters" and "facet" in body["error"]["message"]


async def test_beside_vectors_the_keyword_part_stops_at_half_the_words(
    app: Quart, catalog: dict[str, int]
) -> None:
    """Hybrid search fuses keyword hits with the vector ranking, which already ranks items that
    share a word with the query: its forgiving passes keep at least half of the query's words."""
    services = services_of(app)
    queries = services.queries
    assert queries is not None
    query = "faded merino velvet corduroy"  # no item holds two of these words
    alone = await keyword_ranking(services, queries, query, SearchFilters())
    beside = await keyword_ranking(services, queries, query, SearchFilters(), beside_vectors=True)
    text = {catalog[row["title"]]: " ".join(str(v) for v in row.values()).lower() for row in CATALOG}
    words = query.split()
    assert alone, "keyword mode falls back to items holding one of the words"
    assert all(sum(w in text[h.id] for w in words) >= 2 for h in beside), beside
    assert len(beside) < len(alone)
