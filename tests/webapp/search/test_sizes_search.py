"""Sizes as shoppers write them find items as shops wrote them, against the real PostgreSQL."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.search.conftest import search, seed_items

ROWS = [
    ("Silk slip dress", "dresses", "10"),
    ("Satin slip dress", "dresses", "12"),
    ("Chunky wool cardigan", "knitwear", "M"),
    ("Cropped cotton cardigan", "knitwear", "Medium"),
    ("Longline cardigan", "knitwear", "med"),
    ("Ribbed cardigan", "knitwear", "Medium"),
    ("Mohair cardigan", "knitwear", "L"),
    ("Selvedge straight jeans", "jeans", "W32 L32"),
    ("Tapered jeans", "jeans", "W34 L32"),
    ("Linen midi dress", "dresses", "UK 10"),
    ("Tea dress", "dresses", "uk10"),
    ("Wrap dress", "dresses", "UK 10"),
]


@pytest.fixture(name="catalog")
async def _catalog(app: Quart) -> list[int]:
    return await seed_items(app, [{"title": t, "category": c, "size": s} for t, c, s in ROWS])


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_sizes_written_as_shoppers_write_them_find_items_as_shops_wrote_them(
    client: QuartClient, catalog: list[int], mode: str
) -> None:
    page = await search(client, q="slip dress uk 10", mode=mode)
    assert page["interpreted"]["filters"] == {"size": "UK 10"}
    assert {i["title"] for i in page["items"]} >= {"Silk slip dress"}
    assert "Satin slip dress" not in {i["title"] for i in page["items"]}
    page = await search(client, q="cardigan in a medium", mode=mode)
    assert page["interpreted"] == {"q": "cardigan", "filters": {"size": "M"}}
    assert {i["title"] for i in page["items"]} == {
        "Chunky wool cardigan", "Cropped cotton cardigan", "Longline cardigan", "Ribbed cardigan"
    }  # fmt: skip
    page = await search(client, q="jeans 32/32", mode=mode)
    assert page["interpreted"] == {"q": "jeans", "filters": {"size": "W32 L32"}}
    assert [i["title"] for i in page["items"]] == ["Selvedge straight jeans"]


async def test_a_size_filter_parameter_matches_every_spelling(client: QuartClient, catalog: list[int]) -> None:
    ten = {"Silk slip dress", "Linen midi dress", "Tea dress", "Wrap dress"}
    assert {i["title"] for i in (await search(client, size="10"))["items"]} == ten
    assert {i["title"] for i in (await search(client, size="uk 10"))["items"]} == ten
    # Another region's 10 is another size; a bare 10 may be either.
    assert {i["title"] for i in (await search(client, size="US 10"))["items"]} == {"Silk slip dress"}
    assert {i["title"] for i in (await search(client, size="Medium"))["items"]} == {
        "Chunky wool cardigan", "Cropped cotton cardigan", "Longline cardigan", "Ribbed cardigan"
    }  # fmt: skip


async def test_a_size_facet_shows_one_value_with_the_summed_count(
    client: QuartClient, catalog: list[int]
) -> None:
    page = await search(client, facets="size")
    sizes = {v["value"]: v["count"] for v in page["facets"]["size"]}
    # "M", "Medium" and "med" are one size, shown as most of its items write it; "10", "UK 10" and
    # "uk10" are one too (a bare number joins the one region written with it).
    assert sizes == {"Medium": 4, "UK 10": 4, "12": 1, "L": 1, "W32 L32": 1, "W34 L32": 1}
    assert [v["count"] for v in page["facets"]["size"]][:2] == [4, 4]
    # The same over a query's candidates.
    page = await search(client, q="dress", mode="keyword", facets="size")
    assert {v["value"]: v["count"] for v in page["facets"]["size"]} == {"UK 10": 4, "12": 1}
