"""Search that understands shoppers, against the real PostgreSQL: constraints in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.test_search_features import get, seed_catalog

DATA = Path(__file__).resolve().parents[1] / "data"
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
