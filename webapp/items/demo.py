"""A synthetic catalog: drawn garment photos with plausible titles, so a new install has something to find."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from PIL import Image, ImageChops, ImageDraw

from webapp.catalog import garment

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 45),
    "navy": (30, 45, 100),
    "denim blue": (70, 105, 150),
    "black": (25, 25, 28),
    "white": (238, 236, 230),
    "olive": (110, 115, 50),
    "mustard": (215, 165, 40),
    "pink": (235, 150, 175),
    "grey": (130, 130, 135),
    "camel": (190, 150, 100),
    "forest green": (35, 90, 55),
    "burgundy": (115, 25, 45),
}
BRANDS = ["Levi's", "Patagonia", "Zara", "Uniqlo", "Carhartt", "Everlane", "COS", "Arket", "Barbour", None]
SIZES = ["XS", "S", "M", "L", "XL"]
# Garments worth showing off in a demo: none of them worn out.
CONDITIONS = [c for c in garment.CONDITIONS if c != "worn"]
MATERIALS = ["cotton", "wool", "linen", "corduroy", "denim", "fleece"]
ADJECTIVES = ["vintage", "faded", "classic", "oversized", "cropped", "relaxed", "slim"]
PATTERNS = ["plain", "striped", "dotted", "checked"]


@dataclass(frozen=True)
class DemoItem:
    fields: dict[str, str]
    image: bytes


def _outline(kind: str, w: int, h: int) -> list[tuple[float, float]]:
    """A rough silhouette per garment type, in a w x h canvas."""
    cx = w / 2
    if kind in ("t-shirt", "sweater", "jacket", "coat"):
        sleeve = 0.42 if kind == "t-shirt" else 0.48
        bottom = 0.92 if kind == "coat" else 0.82
        return [
            (cx - w * 0.14, h * 0.12), (cx + w * 0.14, h * 0.12), (cx + w * sleeve, h * 0.28),
            (cx + w * (sleeve - 0.08), h * (0.42 if kind == "t-shirt" else 0.7)),
            (cx + w * 0.26, h * 0.36), (cx + w * 0.26, h * bottom), (cx - w * 0.26, h * bottom),
            (cx - w * 0.26, h * 0.36), (cx - w * (sleeve - 0.08), h * (0.42 if kind == "t-shirt" else 0.7)),
            (cx - w * sleeve, h * 0.28),
        ]  # fmt: skip
    if kind in ("jeans", "trousers", "shorts"):
        leg = 0.9 if kind != "shorts" else 0.5
        return [
            (cx - w * 0.24, h * 0.1), (cx + w * 0.24, h * 0.1), (cx + w * 0.28, h * leg),
            (cx + w * 0.04, h * leg), (cx, h * 0.35), (cx - w * 0.04, h * leg), (cx - w * 0.28, h * leg),
        ]  # fmt: skip
    if kind in ("dress", "skirt"):
        top = 0.1 if kind == "dress" else 0.35
        return [
            (cx - w * 0.12, h * top), (cx + w * 0.12, h * top), (cx + w * 0.16, h * 0.4),
            (cx + w * 0.34, h * 0.9), (cx - w * 0.34, h * 0.9), (cx - w * 0.16, h * 0.4),
        ]  # fmt: skip
    raise ValueError(f"unknown garment kind {kind!r}")


KINDS = ["t-shirt", "sweater", "jacket", "coat", "jeans", "trousers", "shorts", "dress", "skirt"]
CATEGORY = {
    "t-shirt": "tops", "sweater": "knitwear", "jacket": "outerwear", "coat": "outerwear",
    "jeans": "bottoms", "trousers": "bottoms", "shorts": "bottoms", "dress": "dresses", "skirt": "skirts",
}  # fmt: skip


def draw_garment(kind: str, colour: str, pattern: str, seed: int, size: int = 320) -> bytes:
    """A JPEG of one garment on a light background; the seed varies the details."""
    rng = random.Random(seed)
    background = tuple(rng.randint(225, 250) for _ in range(3))
    image = Image.new("RGB", (size, size), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    rgb = COLOURS[colour]
    shade = tuple(max(0, min(255, c + rng.randint(-18, 18))) for c in rgb)
    outline = _outline(kind, size, size)
    draw.polygon(outline, fill=shade, outline=(40, 40, 40))  # type: ignore[arg-type]
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(outline, fill=255)
    if pattern != "plain":
        marks = Image.new("L", (size, size), 0)
        mdraw = ImageDraw.Draw(marks)
        step = rng.randint(14, 24)
        for offset in range(0, size, step):
            if pattern == "striped":
                mdraw.rectangle([0, offset, size, offset + step // 3], fill=255)
            elif pattern == "checked":
                mdraw.rectangle([offset, 0, offset + step // 4, size], fill=255)
                mdraw.rectangle([0, offset, size, offset + step // 4], fill=255)
            else:
                for x in range(0, size, step):
                    mdraw.ellipse([x, offset, x + step // 3, offset + step // 3], fill=255)
        accent = Image.new("RGB", (size, size), tuple(255 - c for c in rgb))  # type: ignore[arg-type]
        image.paste(accent, (0, 0), ImageChops.multiply(marks, mask))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def demo_items(count: int, seed: int = 7) -> Iterator[DemoItem]:
    """``count`` distinct listings, the same ones for the same seed."""
    rng = random.Random(seed)
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        colour = rng.choice(list(COLOURS))
        pattern = rng.choice(PATTERNS)
        material = "denim" if kind == "jeans" else rng.choice(MATERIALS)
        brand = rng.choice(BRANDS)
        adjective = rng.choice(ADJECTIVES)
        pattern_word = "" if pattern == "plain" else f"{pattern} "
        title = f"{adjective.capitalize()} {colour} {pattern_word}{material} {kind}"
        price = Decimal(rng.randint(500, 12000)) / 100
        fields = {
            "title": title,
            "description": f"Pre-loved {kind} in {colour} {material}, {pattern} pattern. Item #{index + 1}.",
            "brand": brand or "",
            "category": CATEGORY[kind],
            "size": rng.choice(SIZES)
            if kind not in ("jeans", "trousers")
            else str(rng.choice(range(26, 38, 2))),
            "colour": colour,
            "condition": rng.choice(CONDITIONS),
            "price": str(price),
            "currency": "USD",
        }
        yield DemoItem(fields, draw_garment(kind, colour, pattern, seed * 100_003 + index))
