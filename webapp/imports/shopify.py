"""Shopify's product CSV export, and its product webhooks' payloads, as listings.

Shopify's help page "Using CSV files to import and export products" documents the columns. Two
header styles are in use: the classic one (``Handle``, ``Body (HTML)``, ``Variant Price``,
``Image Src``, ``Image Position``) and the current one (``URL handle``, ``Description``,
``Price``, ``Product image URL``, ``Image position``). A product spans several rows under one
handle: its first row holds the product's fields, the others add a variant or a photo.

One item per product (a second-hand piece is usually one garment): the handle is its
external id, Vendor its brand, the size option its size (several sizes are joined when they
fit, "S / M"), the lowest variant price its price, the description as plain text. Category is
a ``category:`` tag when there is one, else the product type; ``condition:`` and ``colour:``
tags set those fields. Draft and archived products, and classic exports' unpublished ones, are
not listed.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from webapp.catalog.garment import CONDITIONS

SIZE_OPTION_NAMES = ("size", "taille", "größe", "talla", "taglia", "maat")
COLOUR_OPTION_NAMES = ("color", "colour")


@dataclass(frozen=True)
class Style:
    """Where one header style keeps each thing."""

    name: str
    handle: str
    description: str
    price: str
    image: str
    position: str
    option: str  # "Option{n} Name" / "Option{n} name"; the value column follows the same case
    published: str | None

    def option_name(self, n: int) -> str:
        return self.option.format(n=n)

    def option_value(self, n: int) -> str:
        return self.option.format(n=n).replace(" Name", " Value").replace(" name", " value")


CLASSIC = Style("classic", "Handle", "Body (HTML)", "Variant Price", "Image Src", "Image Position",
                "Option{n} Name", "Published")  # fmt: skip
CURRENT = Style("current", "URL handle", "Description", "Price", "Product image URL", "Image position",
                "Option{n} name", "Published on online store")  # fmt: skip


def header_style(columns: Iterable[str]) -> Style | None:
    """The Shopify style a header row is written in, or None when it is not a Shopify export."""
    present = {c.strip() for c in columns}
    for style in (CLASSIC, CURRENT):
        if {style.handle, "Title", style.price, style.image} <= present:
            return style
    return None


class _Text(html.parser.HTMLParser):
    _BREAKS = frozenset({"p", "br", "div", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(markup: str) -> str:
    """HTML reduced to its text: tags and scripts gone, entities decoded, blank runs folded."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v\xa0]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


@dataclass
class Product:
    """One Shopify product as a listing: its fields, photos in position order, and whether listed."""

    handle: str
    where: str
    fields: dict[str, str] = field(default_factory=dict)
    photos: list[str] = field(default_factory=list)
    listed: bool = True
    product_id: int | None = None
    problem: str | None = None


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _tagged(tags: list[str], key: str) -> str | None:
    for tag in tags:
        name, sep, value = tag.partition(":")
        if sep and name.strip().lower() == key and value.strip():
            return value.strip()
    return None


def _fields(
    title: str, body_html: str, vendor: str, kind: str, tags: list[str], sizes: list[str],
    colours: list[str], prices: list[str],
) -> tuple[dict[str, str], str | None]:  # fmt: skip
    fields = {"title": title.strip(), "description": plain_text(body_html)[:5000], "brand": vendor.strip()}
    category = _tagged(tags, "category") or kind.strip()
    fields["category"] = category.lower()
    condition = (_tagged(tags, "condition") or "").lower().replace(" ", "_").replace("-", "_")
    if condition in CONDITIONS:
        fields["condition"] = condition
    colour = _tagged(tags, "colour") or _tagged(tags, "color") or (colours[0] if len(set(colours)) == 1 else "")
    fields["colour"] = colour.lower()
    distinct = list(dict.fromkeys(s.strip() for s in sizes if s.strip()))
    joined = " / ".join(distinct)
    fields["size"] = joined if len(joined) <= 20 else ""  # SizeLabel's limit: too many sizes to name
    amounts = []
    for price in prices:
        try:
            amounts.append(Decimal(price.strip()))
        except InvalidOperation:
            continue
    if not amounts:
        return fields, "no variant has a price"
    fields["price"] = str(min(amounts))
    return fields, None


def _listed(status: str, published: str | None) -> bool:
    if status.strip().lower() not in ("", "active"):
        return False  # draft, archived, unlisted
    return published is None or published.strip().lower() not in ("false", "no", "0")


def _option_values(row: dict[str, str], names: dict[int, str], style: Style, wanted: tuple[str, ...]) -> str:
    for n in (1, 2, 3):
        if names.get(n, "").strip().lower() in wanted:
            return row.get(style.option_value(n), "")
    return ""


def products(rows: Iterable[tuple[int, dict[str, str]]], style: Style) -> Iterator[Product]:
    """Rows (line number, values by column) grouped into products, in the file's order.

    A product's rows follow each other in an export; a handle met again after another product
    is reported rather than silently merged or split."""
    seen: set[str] = set()
    group: list[tuple[int, dict[str, str]]] = []
    for line, row in rows:
        handle = row.get(style.handle, "").strip()
        if group and handle != group[0][1].get(style.handle, "").strip():
            yield _product(group, style, seen)
            group = []
        group.append((line, row))
    if group:
        yield _product(group, style, seen)


def _product(group: list[tuple[int, dict[str, str]]], style: Style, seen: set[str]) -> Product:
    first_line, first = group[0]
    last_line = group[-1][0]
    handle = first.get(style.handle, "").strip()
    where = f"line {first_line}" if first_line == last_line else f"lines {first_line}-{last_line}"
    product = Product(handle, where)
    if not handle:
        product.problem = f"no {style.handle}"
        return product
    if handle in seen:
        product.problem = f"{handle!r} appears again after other products; its rows must follow each other"
        return product
    seen.add(handle)
    names = {n: first.get(style.option_name(n), "") for n in (1, 2, 3)}
    sizes: list[str] = []
    colours: list[str] = []
    prices: list[str] = []
    photos: list[tuple[int, str]] = []
    for _line, row in group:
        if row.get(style.price, "").strip():  # a variant row (photo-only rows have no price)
            sizes.append(_option_values(row, names, style, SIZE_OPTION_NAMES))
            colours.append(_option_values(row, names, style, COLOUR_OPTION_NAMES))
            prices.append(row[style.price])
        src = row.get(style.image, "").strip()
        if src:
            position = row.get(style.position, "").strip()
            photos.append((int(position) if position.isdigit() else 10**6 + len(photos), src))
    product.fields, product.problem = _fields(
        first.get("Title", ""), first.get(style.description, ""), first.get("Vendor", ""),
        first.get("Type", ""), _tags(first.get("Tags", "")), sizes, colours, prices,
    )  # fmt: skip
    product.photos = list(dict.fromkeys(src for _, src in sorted(photos, key=lambda p: p[0])))
    published = first.get(style.published) if style.published else None
    product.listed = _listed(first.get("Status", ""), published)
    return product


def from_webhook(payload: dict[str, Any]) -> Product:
    """A ``products/create`` or ``products/update`` payload (Shopify's REST product shape)."""
    handle = str(payload.get("handle") or "").strip()
    product = Product(handle, f"product {payload.get('id')}")
    product.product_id = int(payload["id"]) if str(payload.get("id", "")).isdigit() else None
    options = payload.get("options") or []
    size_at = colour_at = None
    for option in options if isinstance(options, list) else []:
        name = str(option.get("name", "")).strip().lower() if isinstance(option, dict) else ""
        position = option.get("position") if isinstance(option, dict) else None
        if name in SIZE_OPTION_NAMES and isinstance(position, int):
            size_at = position
        if name in COLOUR_OPTION_NAMES and isinstance(position, int):
            colour_at = position
    variants = [v for v in payload.get("variants") or [] if isinstance(v, dict)]
    sizes = [str(v.get(f"option{size_at}") or "") for v in variants] if size_at else []
    colours = [str(v.get(f"option{colour_at}") or "") for v in variants] if colour_at else []
    prices = [str(v.get("price") or "") for v in variants]
    tags = payload.get("tags") or ""
    product.fields, product.problem = _fields(
        str(payload.get("title") or ""), str(payload.get("body_html") or ""), str(payload.get("vendor") or ""),
        str(payload.get("product_type") or ""), _tags(tags if isinstance(tags, str) else ",".join(tags)),
        sizes, colours, prices,
    )  # fmt: skip
    images = [i for i in payload.get("images") or [] if isinstance(i, dict) and i.get("src")]
    images.sort(key=lambda i: i["position"] if isinstance(i.get("position"), int) else 10**6)
    product.photos = list(dict.fromkeys(str(i["src"]) for i in images))
    product.listed = _listed(str(payload.get("status") or ""), None)
    if not handle:
        product.problem = "the payload has no handle"
    return product
