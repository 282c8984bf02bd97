"""Demand gaps: unmet searches grouped by what they asked for, the list a reseller sources from.

Searches that found nothing or almost nothing are grouped by brand, category, size, colour,
condition, price band (from the filters given or read from the words) and the words left over:
"carhartt jacket under 60" and "Carhartt jacket, under $55" are one gap, "Carhartt jackets in L
under $60". Each gap links to the shop's search page with the query that reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode, urlsplit, urlunsplit

from webapp.analytics.repo import Unmet

# Price bands: a ceiling is rounded up to the next of these, a floor down, so that nearby
# prices a shopper names fall in one band.
BANDS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250, 300, 400, 500, 750, 1000)
FIELDS = ("brand", "category", "size", "colour", "condition")
CONDITIONS = {"new_with_tags": "new with tags", "like_new": "like new"}


def _price(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def price_band(price_min: str | None, price_max: str | None) -> tuple[int | None, int | None]:
    """The band a search's price range falls in: (floor, ceiling), either None when not given."""
    low, high = _price(price_min), _price(price_max)
    floor = max((b for b in BANDS if b <= low), default=0) if low is not None else None
    ceiling = next((b for b in BANDS if b >= high), None) if high is not None else None
    if high is not None and ceiling is None:
        ceiling = int(high.to_integral_value(rounding="ROUND_CEILING"))
    return (floor or None), ceiling


@dataclass(frozen=True)
class GapKey:
    terms: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price_floor: int | None
    price_ceiling: int | None

    def describe(self) -> str:
        """In words, like "Carhartt jacket in L under $60"."""
        words = [w for w in (self.colour, self.brand) if w]
        what = " ".join(p for p in (self.category, self.terms) if p) or "anything"
        words.append(what)
        if self.size:
            words.append(f"in {self.size}")
        if self.condition:
            words.append(f"({CONDITIONS.get(self.condition, self.condition)})")
        if self.price_floor and self.price_ceiling:
            words.append(f"${self.price_floor}-${self.price_ceiling}")
        elif self.price_ceiling:
            words.append(f"under ${self.price_ceiling}")
        elif self.price_floor:
            words.append(f"over ${self.price_floor}")
        return " ".join(words)

    def search_params(self) -> dict[str, str]:
        """The search page's query string that runs this search again."""
        params: dict[str, str] = {"q": self.terms} if self.terms else {}
        for name in FIELDS:
            value = getattr(self, name)
            if value:
                params[name] = value
        if self.price_floor:
            params["price_min"] = str(self.price_floor)
        if self.price_ceiling:
            params["price_max"] = str(self.price_ceiling)
        return params

    def link(self, page_url: str) -> str:
        """``page_url`` with this search's q and filters."""
        parts = urlsplit(page_url)
        return urlunsplit(parts._replace(query=urlencode(self.search_params())))


@dataclass(frozen=True)
class Gap:
    key: GapKey
    searches: int
    no_results: int
    most_results: int
    variants: int

    @property
    def description(self) -> str:
        return self.key.describe()


def gap_key(unmet: Unmet) -> GapKey:
    f = unmet.filters
    floor, ceiling = price_band(f.get("price_min"), f.get("price_max"))

    def value(name: str) -> str | None:
        found = f.get(name)
        # Brands and colours come in the catalog's spelling or a shopper's: one gap either way.
        return found.strip() if found else None

    brand, size, colour = value("brand"), value("size"), value("colour")
    return GapKey(
        terms=unmet.terms,
        brand=brand.title() if brand and brand.islower() else brand,
        category=value("category"),
        size=size.upper() if size else None,
        colour=colour.lower() if colour else None,
        condition=value("condition"),
        price_floor=floor,
        price_ceiling=ceiling,
    )


def demand_gaps(unmet: list[Unmet], limit: int = 100) -> list[Gap]:
    """Unmet searches grouped by what they asked for, most searched first."""
    groups: dict[GapKey, list[Unmet]] = {}
    for search in unmet:
        groups.setdefault(gap_key(search), []).append(search)
    gaps = [
        Gap(
            key=key,
            searches=sum(s.searches for s in members),
            no_results=sum(s.no_results for s in members),
            most_results=max(s.most_results for s in members),
            variants=len(members),
        )
        for key, members in groups.items()
    ]
    gaps.sort(key=lambda g: (-g.searches, -g.no_results, g.description))
    return gaps[:limit]
