"""The query parser on a labelled set of shopper phrasings (tests/data/parse_queries.txt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webapp.search.parse import ALIASES_FILE, Vocabulary, load_aliases, merge_filters, parse_query

DATA = Path(__file__).resolve().parents[2] / "data"


def catalog_vocabulary() -> Vocabulary:
    items = json.loads((DATA / "catalog.json").read_text())
    return Vocabulary.build(
        (i["brand"] for i in items if i["brand"]),
        (i["colour"] for i in items if i["colour"]),
        load_aliases(ALIASES_FILE),
    )


def labelled() -> list[tuple[str, str, dict[str, str]]]:
    cases = []
    for line in (DATA / "parse_queries.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        query, q, filters = (part.strip() for part in line.split("|"))
        expected = dict(pair.strip().split("=", 1) for pair in filters.split(";") if pair.strip())
        cases.append((query, q, {k.strip(): v.strip() for k, v in expected.items()}))
    return cases


def test_labelled_phrasings_parse_exactly_and_negatives_stay_whole() -> None:
    vocabulary = catalog_vocabulary()
    cases = labelled()
    positives = [c for c in cases if c[2]]
    negatives = [c for c in cases if not c[2]]
    assert len(cases) >= 250 and len(negatives) >= 100
    misses = []
    for query, q, filters in positives:
        parsed = parse_query(query, vocabulary)
        if (parsed.q, parsed.filters) != (q, filters):
            misses.append((query, parsed.q, parsed.filters))
    accuracy = 1 - len(misses) / len(positives)
    false = [(query, parse_query(query, vocabulary).filters) for query, _, _ in negatives]
    false = [(query, found) for query, found in false if found]
    print(
        f"parser exact-match accuracy {accuracy:.3f} on {len(positives)}",
        f"{len(false)} false on {len(negatives)}",
    )
    assert accuracy >= 0.97, misses
    assert false == []
    # A negative keeps its words as typed.
    assert all(parse_query(query, vocabulary).q == q for query, q, _ in negatives)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("M&S jumper", {"brand": "Marks & Spencer"}),
        ("the 90s jacket", {}),
        ("nike air max 90", {"brand": "Nike"}),
        ("under armour hoodie", {"brand": "Under Armour"}),
    ],
)
def test_names_are_not_read_as_sizes_or_prices(query: str, expected: dict[str, str]) -> None:
    assert parse_query(query, catalog_vocabulary()).filters == expected


def test_brands_and_colours_the_catalog_does_not_hold_stay_in_the_query() -> None:
    vocabulary = Vocabulary.build(["Zara"], ["navy"])
    parsed = parse_query("patagonia fleece in burgundy size M", vocabulary)
    assert parsed.filters == {"size": "M"}
    assert parsed.q == "patagonia fleece in burgundy"


def test_parameters_win_over_parsed_words() -> None:
    parsed = {"size": "M", "price_max": "40", "colour": "navy"}
    assert merge_filters({"size": "L"}, parsed) == {"price_max": "40", "colour": "navy"}
    # A price range given as parameters replaces the query's whole range.
    assert merge_filters({"price_min": "50"}, parsed) == {"size": "M", "colour": "navy"}
