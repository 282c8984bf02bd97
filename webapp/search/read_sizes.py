"""Sizes written in a query, the ways shoppers write them ("size M", "uk10", "in a medium", "32/32").

A size is read only where nothing else could be meant: "medium wash jeans" and "large tote" keep
their words, "in a medium" and "mediums" are sizes, "size ten" is 10 but "size zero" is a style.
The value read is shown back to the shopper as written here ("UK 10", "M", "W32 L32"); filters
compare its key (webapp.catalog.sizes), so the catalog's own spelling never empties a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

from webapp.catalog.sizes import LENGTHS, REGIONS, WAISTS

_LETTER_SIZES = {
    "xxxs": "XXXS", "xxs": "XXS", "xs": "XS", "s": "S", "m": "M", "l": "L", "xl": "XL", "xxl": "XXL",
    "xxxl": "XXXL", "2xl": "XXL", "3xl": "XXXL", "4xl": "XXXXL", "small": "S", "medium": "M", "med": "M",
    "large": "L", "extra small": "XS", "extra large": "XL", "x-large": "XL", "x-small": "XS",
    "xx-large": "XXL", "mediums": "M", "larges": "L",
}  # fmt: skip
_LETTER = "|".join(sorted((re.escape(k) for k in _LETTER_SIZES), key=len, reverse=True))
# Words for a size only after "size" ("size ten"): "size zero" and "one size" name other things.
_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "sixteen": 16, "eighteen": 18,
    "twenty": 20,
}  # fmt: skip
_SPELLED = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_REGION = rf"({'|'.join(REGIONS)})"
_SIZE_NUMBER = r"(\d{1,2}(?:\.5)?)"
_IN = r"(?:(?:in|a|in\s+a)\s+)?"
# What may follow a size word read without "size" before it: the end, punctuation, another
# constraint ("in a medium under $40"); never a noun it could describe ("in a medium wash").
_THEN = (
    r"(?=\s*(?:$|[,;.!?)]|[$£€\d]|(?:under|below|over|above|less|more|max|between|from|for|and|with|in|"
    r"by|or|at|size|please|pls|only|new|used|good|like)\b))"
)

_SIZE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # waist and length: "w32 l34", "w32/l34", "32x34", "32/34", "32w 34l", "w32"
    (re.compile(rf"\b{_IN}(?:size\s+)?w\s?(\d{{2}})\s*/?\s*l\s?(\d{{2}})\b"), "waist_length"),
    (re.compile(r"\b(?:size\s+)?(\d{2})\s?w\s*/?\s*(\d{2})\s?l\b"), "waist_length"),
    (re.compile(r"(?<![\w./])(?:size\s+)?(\d{2})\s?[x/]\s?(\d{2})(?![\w./])"), "waist_length"),
    (re.compile(rf"\b{_IN}(?:size\s+)?w\s?(\d{{2}})\b"), "waist"),
    # "size uk 10", "uk 10", "eu38"
    (re.compile(rf"\b{_IN}(?:size\s*:?\s*)?{_REGION}\s?{_SIZE_NUMBER}(?![\w.])"), "region"),
    # "size M", "size 10", "size large", "size ten", "size uk ten"
    (re.compile(rf"\b{_IN}size\b\s*:?\s*(?:({_LETTER})\b|{_SIZE_NUMBER}(?![\w.]))"), "labelled"),
    (re.compile(rf"\b{_IN}size\s*:?\s*(?:{_REGION}\s+)?({_SPELLED})\b"), "spelled"),
    # "in a medium", "in large" (followed by nothing it could describe), "mediums"
    (re.compile(rf"\bin\s+(?:a\s+)?(extra\s+small|extra\s+large|small|medium|large|med){_THEN}"), "labelled"),
    (re.compile(r"\b(mediums|larges)\b"), "labelled"),
    # "XL", "xxs" on their own: letters no word has
    (re.compile(r"(?<![\w&'.\-])(xxxs|xxs|xs|xl|xxl|xxxl|2xl|3xl|4xl)(?![\w&'.\-])"), "labelled"),
]
# A lone capital S, M or L is a size ("jacket M"), unless it is part of a name ("M&S", "L.L.Bean").
_CAPITAL_SIZE = re.compile(r"(?<![\w&'.\-])([SML])(?![\w&'.\-])")

Free = Callable[[int, int], bool]


def number_text(text: str) -> str:
    """A number as the response writes it: "40.00" -> "40", "7.50" -> "7.5", "08" -> "8"."""
    return str(Decimal(text).normalize()) if "." in text else str(int(text))


def find_size(lower: str, original: str, free: Free) -> tuple[str, int, int] | None:
    """The first size written in the query, as (value, start, end), in parts ``free`` allows."""
    for pattern, kind in _SIZE_PATTERNS:
        match = _first(pattern, lower, free)
        if match is None:
            continue
        value = _value(kind, [g for g in match.groups() if g is not None])
        if value is not None:
            return value, match.start(), match.end()
    match = _first(_CAPITAL_SIZE, original, free)
    return None if match is None else (match.group(1), match.start(), match.end())


def _first(pattern: re.Pattern[str], text: str, free: Free) -> re.Match[str] | None:
    for match in pattern.finditer(text):
        if free(match.start(), match.end()):
            return match
    return None


def _value(kind: str, groups: list[str]) -> str | None:
    if kind == "waist_length":
        waist, length = int(groups[0]), int(groups[1])
        return f"W{waist} L{length}" if waist in WAISTS and length in LENGTHS else None
    if kind == "waist":
        return f"W{groups[0]}" if int(groups[0]) in WAISTS else None
    if kind == "region":
        return f"{groups[0].upper()} {number_text(groups[1])}"
    if kind == "spelled":
        number = str(_NUMBER_WORDS[groups[-1]])
        return f"{groups[0].upper()} {number}" if len(groups) == 2 else number
    word = " ".join(groups[0].split())
    return _LETTER_SIZES[word] if word in _LETTER_SIZES else number_text(groups[0])
