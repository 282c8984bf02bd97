"""One key per size, however a shop writes it: "10", "UK 10", "uk10" and "Size 10" are one size.

Shops write the same size many ways, and a filter that compared the text as typed found nothing
for "UK 10" in a catalog that writes "10". Each item keeps its size as written (shown to
shoppers) and a key beside it (``items.size_key``), which filters and facets compare:

- letters: "M", "Medium", "med", "size m" -> ``m``; "XXL", "2XL" -> ``xxl``; "One size" -> ``os``;
- waist and length: "W32 L32", "32x32", "32/32", "W32/L32", "32W 32L" -> ``w32 l32``;
  a waist alone ("W32", "32W") -> ``w32``;
- numbers keep the region written with them ("UK 10", "uk10", "10 UK" -> ``uk 10``), since a
  UK 10 dress is not a US 10; a bare number ("10", "Size 10") -> ``10``;
- anything else: the text lower-cased with its spaces collapsed, so it still matches itself.

A bare number and a region-qualified one of the same number match each other (``accepted_keys``):
a shop that writes "10" means its own region's 10, which a shopper asking for "UK 10" may want.

The database computes the key with a SQL function of the same rules (migration 0013), so every
writer, bulk loads included, stores it; a test holds the two to the same answers.
"""

from __future__ import annotations

import re

# Regions written before (or after) a numeric size.
REGIONS = ("uk", "us", "eu", "it", "fr", "au")
_LETTERS = {
    "xxxs": "xxxs", "3xs": "xxxs", "xxs": "xxs", "2xs": "xxs", "xs": "xs", "xsmall": "xs",
    "extrasmall": "xs", "s": "s", "sm": "s", "small": "s", "m": "m", "med": "m", "medium": "m",
    "l": "l", "lg": "l", "lrg": "l", "large": "l", "xl": "xl", "xlarge": "xl", "extralarge": "xl",
    "xxl": "xxl", "2xl": "xxl", "xxlarge": "xxl", "xxxl": "xxxl", "3xl": "xxxl", "xxxxl": "xxxxl",
    "4xl": "xxxxl", "os": "os", "onesize": "os",
}  # fmt: skip
_SIZE_WORD = re.compile(r"^size\s*:?\s*")
_WAIST_LENGTH = re.compile(r"^w?\s*(\d{2})\s*w?\s*(?:x|/|\s|(?=l))\s*l?\s*(\d{2})\s*l?$")
_WAIST = re.compile(r"^(?:w\s*(\d{2})|(\d{2})\s*w)$")
_REGIONS = "|".join(REGIONS)
_REGION_FIRST = re.compile(rf"^({_REGIONS})\s*(\d{{1,3}}(?:\.5)?)$")
_REGION_AFTER = re.compile(rf"^(\d{{1,3}}(?:\.5)?)\s*({_REGIONS})$")
_NUMBER = re.compile(r"^\d{1,3}(?:\.5)?$")
# Waist and length in inches as jeans are sold; outside these, "10/12" is a dress size range.
WAISTS = range(22, 51)
LENGTHS = range(26, 39)


def size_key(written: str | None) -> str | None:
    """The canonical key of a size as written; None when there is no size."""
    if written is None:
        return None
    text = _SIZE_WORD.sub("", " ".join(written.lower().split()))
    if not text:
        return None
    compact = re.sub(r"[\s.\-]", "", text)
    if compact in _LETTERS:
        return _LETTERS[compact]
    if match := _WAIST_LENGTH.match(text):
        waist, length = int(match.group(1)), int(match.group(2))
        if waist in WAISTS and length in LENGTHS:
            return f"w{waist} l{length}"
    if match := _WAIST.match(text):
        return f"w{match.group(1) or match.group(2)}"
    if match := _REGION_FIRST.match(text):
        return f"{match.group(1)} {match.group(2)}"
    if match := _REGION_AFTER.match(text):
        return f"{match.group(2)} {match.group(1)}"
    return text


def accepted_keys(wanted: str) -> list[str]:
    """The item keys a size filter matches: its own, and across a bare number and the same
    number with a region ("UK 10" finds "10"; "10" finds "UK 10" and "US 10")."""
    key = size_key(wanted)
    if key is None:
        return []
    region, _, number = key.partition(" ")
    if region in REGIONS and _NUMBER.match(number):
        return [key, number]
    if _NUMBER.match(key):
        return [key, *(f"{r} {key}" for r in REGIONS)]
    return [key]


def region_free(key: str) -> str | None:
    """The bare number of a region-qualified key ("uk 10" -> "10"), else None."""
    region, _, number = key.partition(" ")
    return number if region in REGIONS and _NUMBER.match(number) else None
