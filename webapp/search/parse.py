"""Constraints written in a query ("denim jacket size M under $40") become filters.

Rules, not a model: instant, offline, and each extraction can be explained. Prices, sizes and
conditions are read by patterns; brands and colours only when the catalog holds them, so a
parsed filter never empties the results by naming something nobody sells. Whatever is not
taken out goes on to the vector and keyword search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from webapp.catalog.garment import Condition
from webapp.search.read_sizes import find_size, number_text

# The filters a query can carry, in the order the response lists them.
PARSED_FIELDS = ("brand", "colour", "size", "condition", "price_min", "price_max")

_CUR = r"[$£€]"
_NUM = r"(\d{1,6}(?:\.\d{1,2})?)"
_UNIT = r"(?:\s?(?:dollars?|usd|bucks|pounds?|gbp|quid|euros?|eur))"
_END = r"(?![\w%.,]\d|[\w%])"  # a number ends here: not "40cm", "90s", "40%", "4.5.1"
_START = r"(?<![\w$£€.])"
_MONEY = rf"{_CUR}?\s?{_NUM}{_UNIT}?{_END}"

_MAX_WORDS = (
    r"under|below|less\s+than|cheaper\s+than|lower\s+than|no\s+more\s+than|not\s+more\s+than|"
    r"up\s+to|at\s+most|(?<!air\s)max(?:imum)?|within|<=?"
)
_MIN_WORDS = r"over|above|more\s+than|at\s+least|min(?:imum)?|>=?"
_PRICE_LEAD = r"(?:(?:for|priced|price|costing|at)\s+)?"

# (pattern, which bounds its groups fill); tried in order, each match taken out of the text.
_PRICE_PATTERNS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (
        re.compile(
            rf"{_START}{_PRICE_LEAD}(?:between|from)\s+{_CUR}?\s?{_NUM}{_UNIT}?\s+(?:and|to|-)\s+{_MONEY}"
        ),
        ("price_min", "price_max"),
    ),
    (
        re.compile(rf"{_START}{_PRICE_LEAD}{_CUR}\s?{_NUM}{_UNIT}?\s?(?:-|–|to)\s?{_MONEY}"),
        ("price_min", "price_max"),
    ),
    (
        re.compile(
            rf"{_START}{_PRICE_LEAD}{_NUM}\s?(?:-|–|to)\s?(?:{_CUR}\s?{_NUM}{_UNIT}?|{_NUM}{_UNIT}){_END}"
        ),
        ("price_min", "price_max", "price_max"),
    ),
    (re.compile(rf"{_START}{_PRICE_LEAD}(?:{_MAX_WORDS})\s*{_MONEY}"), ("price_max",)),
    (re.compile(rf"{_START}{_PRICE_LEAD}(?:{_MIN_WORDS})\s*{_MONEY}"), ("price_min",)),
    (
        re.compile(rf"{_START}{_CUR}?\s?{_NUM}{_UNIT}?\s+(?:or\s+(?:less|under|below|cheaper)|max|tops){_END}"),
        ("price_max",),
    ),
    (
        re.compile(rf"{_START}{_CUR}?\s?{_NUM}{_UNIT}?\s*(?:or\s+more|and\s+(?:up|over|above)|\+)"),
        ("price_min",),
    ),
]

_CONDITIONS: list[tuple[re.Pattern[str], Condition]] = [
    (
        re.compile(
            r"\b(?:(?:brand\s+)?new\s+with\s+tags?|bnwt|nwt|with\s+(?:the\s+)?tags?(?:\s+(?:on|attached))?|"
            r"tags\s+attached)\b"
        ),
        "new_with_tags",
    ),
    (
        re.compile(
            r"\b(?:in\s+)?(?:like[\s-]new|as\s+new|new\s+without\s+tags|nwot|"
            r"(?:mint|excellent|perfect)\s+condition)\b"
        ),
        "like_new",
    ),
    (re.compile(r"\b(?:in\s+)?(?:good|great|very\s+good)\s+(?:condition|cond)\b"), "good"),
    (re.compile(r"\b(?:in\s+)?(?:fair|ok|okay|used)\s+condition\b"), "fair"),
    (re.compile(r"\b(?:in\s+)?(?:worn\s+condition|well[\s-]worn|heavily\s+worn)\b"), "worn"),
]

# Words that are brands and also plain English: recognised only as the catalog writes them.
_COMMON_WORDS = frozenset(
    {"next", "gap", "boss", "guess", "mango", "cos", "vans", "converse", "simple", "monki", "only", "new look"}
)
# Words left dangling once a constraint is taken out ("in navy", "by Levi's", "for under $40").
_CONNECTORS = frozenset(
    {"in", "by", "for", "with", "and", "a", "size", "from", "at", "of", "the", "&", "-", ","}
)
# "nike style shorts" asks for a look, not the brand.
_NOT_THE_BRAND = frozenset({"style", "styled", "inspired", "type", "dupe", "alike", "lookalike", "esque"})
_TOKEN = re.compile(r"\S+")
_EDGE = "\"'.,;:!?()[]{}"


def _key(text: str) -> str:
    """How names compare: case, apostrophes, dots and spacing do not matter ("Levi's" = "levis")."""
    return " ".join(text.lower().replace("'", "").replace("’", "").replace(".", " ").split())


def normalise_query(text: str) -> str:
    # CLIP's tokenizer lower-cases and collapses whitespace itself, so these are the same query.
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Vocabulary:
    """The names the catalog holds, by comparison key: brand and colour filters come only from here."""

    brands: dict[str, str] = field(default_factory=dict)
    colours: dict[str, str] = field(default_factory=dict)
    longest: int = 4
    protected: re.Pattern[str] | None = None

    @classmethod
    def build(cls, brands: Iterable[str], colours: Iterable[str], aliases: Aliases | None = None) -> Vocabulary:
        brand_keys = {_key(b): b for b in brands if b and _key(b)}
        colour_keys = {_key(c): c for c in colours if c and _key(c)}
        aliases = aliases or Aliases()
        for alias, target in aliases.names.items():
            canonical = brand_keys.get(_key(target)) or colour_keys.get(_key(target))
            if canonical is None:
                continue
            table = brand_keys if _key(target) in brand_keys else colour_keys
            table.setdefault(_key(alias), canonical)
        longest = max((len(k.split()) for k in [*brand_keys, *colour_keys]), default=1)
        protected = None
        if aliases.phrases:
            alternatives = "|".join(re.escape(p) for p in sorted(aliases.phrases, key=len, reverse=True))
            protected = re.compile(rf"(?<![\w&])(?:{alternatives})(?![\w&])")
        return cls(brand_keys, colour_keys, longest, protected)


@dataclass(frozen=True)
class Aliases:
    """Other ways shoppers write a catalog name, and phrases that only look like a name."""

    names: dict[str, str] = field(default_factory=dict)
    phrases: tuple[str, ...] = ()


def load_aliases(path: Path) -> Aliases:
    """``alias = name`` lines, and ``!phrase`` lines for words never read as a filter
    ("red wing boots" are a brand, not red); '#' starts a comment."""
    aliases: dict[str, str] = {}
    phrases: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("!") and line[1:].strip():
            phrases.append(line[1:].strip().lower())
        elif "=" in line:
            alias, name = (part.strip() for part in line.split("=", 1))
            if alias and name:
                aliases[alias] = name
    return Aliases(aliases, tuple(phrases))


ALIASES_FILE = Path(__file__).with_name("aliases.txt")


@dataclass(frozen=True)
class Parsed:
    """What a query asked for: the words left to search, and the filters taken out of it."""

    q: str
    filters: dict[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.filters)


class _Text:
    """The query with the parts already taken out blanked, so later rules cannot reuse them."""

    def __init__(self, original: str) -> None:
        self.original = original
        self.lower = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in original)
        self.taken = [False] * len(original)
        self.kept = [False] * len(original)  # never a filter, but still searched

    def free(self, start: int, end: int) -> bool:
        return not any(self.taken[start:end]) and not any(self.kept[start:end])

    def keep(self, pattern: re.Pattern[str] | None) -> None:
        for match in pattern.finditer(self.lower) if pattern else ():
            for i in range(match.start(), match.end()):
                self.kept[i] = True

    def take(self, start: int, end: int) -> None:
        for i in range(start, end):
            self.taken[i] = True

    def rest(self) -> str:
        return "".join(" " if t else ch for ch, t in zip(self.original, self.taken, strict=True))


def parse_query(text: str, vocabulary: Vocabulary) -> Parsed:
    """Take prices, sizes, conditions, and the catalog's brands and colours out of ``text``."""
    found: dict[str, str] = {}
    work = _Text(text)
    work.keep(vocabulary.protected)
    _conditions(work, found)
    _prices(work, found)
    _sizes(work, found)
    _names(work, vocabulary, found)
    if (
        "price_min" in found
        and "price_max" in found
        and Decimal(found["price_min"]) > Decimal(found["price_max"])
    ):
        found["price_min"], found["price_max"] = found["price_max"], found["price_min"]
    ordered = {name: found[name] for name in PARSED_FIELDS if name in found}
    return Parsed(_leftover(work) if ordered else " ".join(text.split()), ordered)


def _first(work: _Text, pattern: re.Pattern[str], text: str | None = None) -> re.Match[str] | None:
    for match in pattern.finditer(work.lower if text is None else text):
        if work.free(match.start(), match.end()):
            return match
    return None


def _conditions(work: _Text, found: dict[str, str]) -> None:
    for pattern, value in _CONDITIONS:
        match = _first(work, pattern)
        if match and "condition" not in found:
            found["condition"] = value
            work.take(match.start(), match.end())


def _prices(work: _Text, found: dict[str, str]) -> None:
    for pattern, bounds in _PRICE_PATTERNS:
        match = _first(work, pattern)
        if match is None or any(b in found for b in bounds):
            continue
        values = [g for g in match.groups() if g is not None]
        for bound, value in zip(dict.fromkeys(bounds), values, strict=False):
            found[bound] = number_text(value)
        work.take(match.start(), match.end())


def _sizes(work: _Text, found: dict[str, str]) -> None:
    size = find_size(work.lower, work.original, work.free)
    if size is not None:
        found["size"] = size[0]
        work.take(size[1], size[2])


def _names(work: _Text, vocabulary: Vocabulary, found: dict[str, str]) -> None:
    """Brands, then colours: the longest run of words that names one the catalog holds."""
    tokens = [m for m in _TOKEN.finditer(work.rest())]
    index = 0
    while index < len(tokens):
        matched = 0
        for width in range(min(vocabulary.longest, len(tokens) - index), 0, -1):
            run = tokens[index : index + width]
            start, end = run[0].start(), run[-1].end()
            written = work.original[start:end].strip(_EDGE)
            if not written or not work.free(start, end):
                continue
            after = tokens[index + width].group().lower() if index + width < len(tokens) else ""
            key = _key(written)
            for name, table in (("brand", vocabulary.brands), ("colour", vocabulary.colours)):
                canonical = table.get(key)
                if canonical is None or name in found:
                    continue
                if name == "brand" and (
                    (key in _COMMON_WORDS and written.islower()) or after.strip(_EDGE) in _NOT_THE_BRAND
                ):
                    continue
                found[name] = canonical
                offset = work.original.index(written, start)
                work.take(offset, offset + len(written))
                matched = width
                break
            if matched:
                break
        index += matched or 1


def _leftover(work: _Text) -> str:
    """The words not taken, without the connectors that led into a taken part ("jacket in navy")."""
    rest = work.rest()
    tokens = list(_TOKEN.finditer(rest))
    words: list[str] = []
    for n, token in enumerate(tokens):
        following = tokens[n + 1].start() if n + 1 < len(tokens) else len(rest)
        before_taken = any(work.taken[token.end() : following]) or n + 1 == len(tokens)
        if token.group().lower().strip(_EDGE) in _CONNECTORS and before_taken:
            continue
        words.append(token.group())
    while words and (words[0].lower().strip(_EDGE) in _CONNECTORS or not words[0].strip(_EDGE)):
        words.pop(0)
    while words and not words[-1].strip(_EDGE):
        words.pop()
    return " ".join(words).strip(" ,;:-")


def merge_filters(explicit: dict[str, object], parsed: dict[str, str]) -> dict[str, str]:
    """The parsed filters that apply: a filter given as a parameter wins over the query's words."""
    kept = {k: v for k, v in parsed.items() if explicit.get(k) is None}
    if explicit.get("price_min") is not None or explicit.get("price_max") is not None:
        # A range given as parameters is the shopper's range; half of another would contradict it.
        kept.pop("price_min", None)
        kept.pop("price_max", None)
    return kept
