"""Shopify product exports, in both header styles, read as listings."""

from __future__ import annotations

import csv
import io

import pytest

from webapp.imports.shopify import CLASSIC, CURRENT, Style, from_webhook, header_style, plain_text, products

CLASSIC_HEADER = ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published", "Option1 Name",
                  "Option1 Value", "Variant SKU", "Variant Price", "Image Src", "Image Position",
                  "Status"]  # fmt: skip
CURRENT_HEADER = ["Title", "URL handle", "Description", "Vendor", "Type", "Tags", "Published on online store",
                  "Status", "SKU", "Option1 name", "Option1 value", "Price", "Product image URL",
                  "Image position"]  # fmt: skip


def _rows(header: list[str], records: list[dict[str, str]]) -> list[tuple[int, dict[str, str]]]:
    text = io.StringIO()
    writer = csv.DictWriter(text, header)
    writer.writeheader()
    writer.writerows(records)
    reader = csv.DictReader(io.StringIO(text.getvalue()))
    return [(n + 2, row) for n, row in enumerate(reader)]


def test_classic_export_groups_variants_and_orders_photos() -> None:
    records = [
        {"Handle": "wool-coat", "Title": "Wool coat", 
         "Body (HTML)": "<p>Warm &amp; <b>heavy</b></p><p>Lined</p>",
         "Vendor": "Barbour", "Type": "Coats", "Tags": "vintage, condition:good", "Published": "TRUE",
         "Option1 Name": "Size", "Option1 Value": "M", "Variant Price": "120.00",
         "Image Src": "https://cdn.test/coat-2.jpg", "Image Position": "2", "Status": "active"},
        {"Handle": "wool-coat", "Option1 Value": "L", "Variant Price": "110.00",
         "Image Src": "https://cdn.test/coat-1.jpg", "Image Position": "1"},
        {"Handle": "wool-coat", "Image Src": "https://cdn.test/coat-3.jpg", "Image Position": "3"},
        {"Handle": "draft-skirt", "Title": "Skirt", "Vendor": "Zara", "Tags": "category:skirts",
         "Option1 Name": "Title", "Option1 Value": "Default Title", "Variant Price": "20", "Status": "draft"},
    ]  # fmt: skip
    assert header_style(CLASSIC_HEADER) is CLASSIC
    coat, skirt = products(_rows(CLASSIC_HEADER, records), CLASSIC)
    assert coat.handle == "wool-coat" and coat.where == "lines 2-4" and coat.listed
    assert coat.photos == [
        "https://cdn.test/coat-1.jpg",
        "https://cdn.test/coat-2.jpg",
        "https://cdn.test/coat-3.jpg",
    ]
    assert coat.fields == {
        "title": "Wool coat", "description": "Warm & heavy\nLined", "brand": "Barbour", "category": "coats",
        "condition": "good", "colour": "", "size": "M / L", "price": "110.00",
    }  # fmt: skip
    assert not skirt.listed and skirt.fields["category"] == "skirts" and skirt.fields["size"] == ""


def test_current_export_and_its_unpublished_products() -> None:
    records = [
        {"Title": "Silk shirt", "URL handle": "silk-shirt", 
         "Description": "<div>Cream<script>x()</script></div>",
         "Vendor": "Equipment", "Type": "Tops", "Published on online store": "TRUE", "Status": "Active",
         "Option1 name": "Size", "Option1 value": "S", "Price": "45.50",
         "Product image URL": "https://cdn.test/shirt.jpg", "Image position": "1"},
        {"Title": "Old tee", "URL handle": "old-tee", "Vendor": "Gap", "Status": "archived", "Price": "5"},
        {"Title": "Hidden", "URL handle": "hidden", "Status": "active", "Published on online store": "FALSE",
         "Price": "5"},
    ]  # fmt: skip
    style = header_style(CURRENT_HEADER)
    assert style is CURRENT
    shirt, tee, hidden = products(_rows(CURRENT_HEADER, records), style)
    assert shirt.fields["description"] == "Cream" and shirt.fields["size"] == "S"
    assert shirt.fields["price"] == "45.50" and shirt.photos == ["https://cdn.test/shirt.jpg"] and shirt.listed
    assert (tee.listed, hidden.listed) == (False, False)


@pytest.mark.parametrize("header", [["title", "price", "image"], ["Handle", "Title"]])
def test_other_files_are_not_taken_for_exports(header: list[str]) -> None:
    assert header_style(header) is None


def test_scattered_rows_and_priceless_products_are_reported() -> None:
    style: Style = CLASSIC
    records = [
        {"Handle": "a", "Title": "A", "Variant Price": "1"},
        {"Handle": "b", "Title": "B"},
        {"Handle": "a", "Variant Price": "2"},
    ]
    a, b, again = products(_rows(CLASSIC_HEADER, records), style)
    assert a.problem is None and b.problem == "no variant has a price" and "again" in (again.problem or "")


def test_webhook_payload() -> None:
    payload = {
        "id": 788032119674292922, "title": "Denim jacket", "handle": "denim-jacket", "status": "active",
        "body_html": "<strong>Faded</strong>", "vendor": "Levi's", "product_type": "Jackets",
        "tags": "condition:like new, 90s", "options": [{"name": "Size", "position": 1, "values": ["M"]}],
        "variants": [{"price": "60.00", "option1": "M"}],
        "images": [{"position": 2, "src": "https://cdn.test/b.jpg"}, {"position": 1, "src": "https://cdn.test/a.jpg"}],
    }  # fmt: skip
    product = from_webhook(payload)
    assert product.product_id == 788032119674292922 and product.handle == "denim-jacket"
    assert product.fields["condition"] == "like_new" and product.fields["size"] == "M"
    assert product.photos == ["https://cdn.test/a.jpg", "https://cdn.test/b.jpg"]


def test_plain_text_keeps_words_not_markup() -> None:
    assert plain_text("<ul><li>One&nbsp;two</li><li>three</li></ul><style>p{}</style>") == "One two\nthree"
