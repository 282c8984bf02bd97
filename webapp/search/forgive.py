"""Keyword matching that forgives: typos, the unfinished last word, synonyms, missing words.

A query becomes one group of alternatives per word: the word itself, its corrections against
the catalog's own vocabulary (one edit for words of 4+ letters, two for 8+, as Typesense and
Meilisearch allow; a swap of two letters is one edit), its synonyms from the shipped list, and
for the last word every catalog word it begins. Items must match every group; when too few do,
groups are let go one at a time, words no item holds first, then the most common ones
(Meilisearch's "frequency" matching strategy), so more matched words rank higher and one
unknown word never empties the results.

What one query may cost is bounded whatever it holds: the first MAX_WORDS words are read (each
costs a fuzzy look-up in the vocabulary and a clause in every round), at most MAX_ROUNDS SQL
rounds run (a long query lets several words go per round, so the last round still reaches the
fewest words), and no round starts once ROUNDS_BUDGET_S has passed.

Under filters (a brand, a size, a price range, a category) a keyword search judges words on the items the
filters allow, not on the whole catalog: "trainers", held by other brands' items, is for a brand
that sells none a word to correct, widen or let go like any unknown one, so the same query finds
the same item whatever other brands hold. Counting the query's terms there is one SQL round
(each term counted up to SCOPE_COUNT_CAP items), taken from the MAX_ROUNDS.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from rapidfuzz import process
from rapidfuzz.distance import OSA

from webapp.catalog.filters import SearchFilters, filter_sql
from webapp.search.repo import Hit, VectorQueries

SYNONYMS_FILE = Path(__file__).with_name("synonyms.txt")
# Most alternatives one word may bring (corrections plus synonyms); keeps the query small.
MAX_ALTERNATIVES = 6
# Words of a query that count (stopwords aside): more than any shopper types, and the rest of
# a pasted paragraph adds nothing a vector search would not find.
MAX_WORDS = 10
# SQL rounds of loosening per ranking, and the time after which no further round starts.
MAX_ROUNDS = 4
# Beside a vector search (hybrid) the keyword half only adds items that hold the words: every
# word (forgiven), then half of them, is as far as it goes.
MAX_ROUNDS_BESIDE_VECTORS = 2
ROUNDS_BUDGET_S = 0.5
# Ranked candidates per list before fusing or re-sorting; pages past it are empty.
CANDIDATES = 200
# Exact matches as plentiful as a page leave typos, synonyms and missing words nothing to add;
# the forgiving pass runs only below this (a stable choice per query, so pages stay consistent).
FORGIVE_BELOW = 20
# Items counted per term under filters: enough to order words by how common they are there.
SCOPE_COUNT_CAP = 500
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
# Words too common to say anything (a subset of PostgreSQL's english.stop): they would match
# most of the catalog on their own.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i in is it its me my of on or our so some that the "
    "this to was what with you your".split()
)


def load_synonyms(path: Path = SYNONYMS_FILE) -> dict[str, tuple[str, ...]]:
    """Each word or phrase of a group maps to the others; a word in several groups gets them all."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0]
        group = [" ".join(term.lower().split()) for term in line.split(",")]
        group = [term for term in group if term]
        for term in group:
            found.setdefault(term, []).extend(t for t in group if t != term and t not in found[term])
    return {term: tuple(others) for term, others in found.items()}


def allowed_edits(word: str) -> int:
    if len(word) >= 8:
        return 2
    return 1 if len(word) >= 4 else 0


def corrections(word: str, vocabulary: dict[str, int], limit: int = 3) -> list[str]:
    """Catalog words within the allowed edits of an unknown ``word``, closest first."""
    return [] if word in vocabulary else _near(word, vocabulary, limit)


def _near(word: str, vocabulary: dict[str, int], limit: int = 3) -> list[str]:
    """Other catalog words within the allowed edits of ``word``, closest first."""
    edits = allowed_edits(word)
    if edits == 0 or any(ch.isdigit() for ch in word):
        return []
    matches = process.extract(word, list(vocabulary), scorer=OSA.distance, score_cutoff=edits, limit=limit * 4)
    matches = [m for m in matches if m[0] != word]
    matches.sort(key=lambda m: (m[1], m[0]))
    best = matches[0][1] if matches else 0
    return [m[0] for m in matches if m[1] == best][:limit]


@dataclass(frozen=True)
class WordGroup:
    """One word of the query and what may stand for it; ``prefix`` when it may be unfinished.

    ``items`` estimates how many items the group matches (the catalog's word counts).
    """

    word: str
    alternatives: tuple[str, ...]
    prefix: bool = False
    items: int = 0
    known: bool = True  # the catalog holds the word as typed (not only a correction of it)

    @property
    def terms(self) -> tuple[str, ...]:
        return (self.word, *self.alternatives)


def _items(term: str, counts: dict[str, int]) -> int:
    words = _WORD.findall(term)
    return min((counts.get(w, 0) for w in words), default=0)


def loosen(groups: list[WordGroup], count: int = 1) -> list[WordGroup]:
    """The groups less the ``count`` to let go next: one no item holds, then a word the catalog
    knows only through a correction (the likeliest to be wrong), then the most common."""
    for _ in range(min(count, len(groups))):
        drop = min(
            range(len(groups)), key=lambda n: (groups[n].items > 0, groups[n].known, -groups[n].items, -n)
        )
        groups = [g for n, g in enumerate(groups) if n != drop]
    return groups


def rounds_step(words: int, fewest: int, rounds: int = MAX_ROUNDS) -> int:
    """Groups to let go per round so that ``rounds`` rounds go from ``words`` down to ``fewest``."""
    return max(1, math.ceil((words - fewest) / max(1, rounds - 1)))


def _tokens(text: str, synonyms: dict[str, tuple[str, ...]]) -> list[tuple[str, bool, bool]]:
    """The first MAX_WORDS words that say something, as (word or two-word synonym, is a pair,
    is the last word typed)."""
    words = _WORD.findall(text.lower())
    found: list[tuple[str, bool, bool]] = []
    index = 0
    while index < len(words) and len(found) < MAX_WORDS:
        pair = " ".join(words[index : index + 2])
        if index + 1 < len(words) and pair in synonyms:
            found.append((pair, True, False))
            index += 2
            continue
        word = words[index]
        index += 1
        if word not in STOPWORDS:
            found.append((word, False, index == len(words)))
    return found


def word_groups(
    text: str,
    vocabulary: dict[str, int],
    synonyms: dict[str, tuple[str, ...]],
    within: dict[str, int] | None = None,
) -> list[WordGroup]:
    """The query's words (the first MAX_WORDS that say something) with their corrections and
    synonyms; two-word synonyms are found first.

    ``within``: how many of the items the filters allow hold each of ``scope_terms`` (a prefix
    written ``word:*``); words are then known, corrected and counted there, not in the catalog.
    """
    groups: list[WordGroup] = []
    for word, pair, last in _tokens(text, synonyms):
        if pair:
            others = synonyms[word][:MAX_ALTERNATIVES]
            groups.append(
                WordGroup(word, others, items=sum(_count(t, vocabulary, within) for t in (word, *others)))
            )
            continue
        typing = last and any(known.startswith(word) for known in vocabulary)
        known = word in vocabulary if within is None else within.get(word, 0) > 0
        fixed: list[str] = []
        if not (typing or known):
            fixed = _near(word, vocabulary)
            fixed = fixed if within is None else [f for f in fixed if within.get(f, 0) > 0]
        alternatives = _unique(
            [*fixed, *synonyms.get(word, ()), *(s for f in fixed for s in synonyms.get(f, ()))]
        )
        kept = tuple(alternatives[:MAX_ALTERNATIVES])
        prefix = last and word.isalnum()
        found = sum(_count(t, vocabulary, within) for t in (word, *kept))
        if prefix and within is not None:
            found += within.get(f"{word}:*", 0)
        elif prefix:
            found += sum(n for known, n in vocabulary.items() if known.startswith(word) and known != word)
        groups.append(WordGroup(word, kept, prefix=prefix, items=found, known=known))
    return groups


def _count(term: str, vocabulary: dict[str, int], within: dict[str, int] | None) -> int:
    return _items(term, vocabulary) if within is None else within.get(term, 0)


def scope_terms(text: str, vocabulary: dict[str, int], synonyms: dict[str, tuple[str, ...]]) -> list[str]:
    """The terms ``word_groups`` looks up in ``within``: each word, the catalog words near it,
    their synonyms, and the last word as a prefix (``word:*``); at most 11 a word. A synonym
    past those counts as held by none, which only orders it among the words let go."""
    terms: list[str] = []
    for word, pair, last in _tokens(text, synonyms):
        if pair:
            terms += [word, *synonyms[word][:MAX_ALTERNATIVES]]
            continue
        near = _near(word, vocabulary)
        # The synonyms a group can keep (MAX_ALTERNATIVES at most): the query's cost stays bounded.
        widened = _unique([*synonyms.get(word, ()), *(s for f in near for s in synonyms.get(f, ()))])
        terms += [word, *near, *widened[:MAX_ALTERNATIVES]]
        if last and word.isalnum():
            terms.append(f"{word}:*")
    return _unique(terms)


async def count_within(
    connection: asyncpg.Connection, terms: list[str], filters: SearchFilters
) -> dict[str, int]:
    """How many of the items ``filters`` allow hold each term (up to SCOPE_COUNT_CAP), in one round.

    Terms match as ``VectorQueries.forgiving`` matches them: a word in either text search
    configuration, several words as a phrase, ``word:*`` as a prefix (only ever of letters and
    digits, so it is valid tsquery syntax).
    """
    if not terms:
        return {}
    params: list[Any] = [terms, SCOPE_COUNT_CAP]
    where = filter_sql(filters, params)
    rows = await connection.fetch(
        f"""SELECT t.term, (SELECT count(*) FROM (
                    SELECT 1 FROM items i
                    WHERE i.search_tsv @@ (CASE
                        WHEN t.term LIKE '%:*' THEN to_tsquery('simple', t.term)
                        WHEN t.term LIKE '% %' THEN phraseto_tsquery('simple', t.term)
                        ELSE plainto_tsquery('simple', t.term) || plainto_tsquery('english', t.term) END)
                      AND {where}
                    LIMIT $2) s) AS items
            FROM unnest($1::text[]) AS t(term)""",
        *params,
    )
    return {row["term"]: row["items"] for row in rows}


async def forgive(
    connection: asyncpg.Connection,
    queries: VectorQueries,
    text: str,
    filters: SearchFilters,
    exact: list[Hit],
    words: dict[str, int],
    synonyms: dict[str, tuple[str, ...]],
    *,
    beside_vectors: bool = False,
) -> list[Hit]:
    """``exact`` followed by matches allowing typos, prefixes and synonyms, then fewer words
    (down to one), in at most MAX_ROUNDS SQL rounds.

    ``beside_vectors``: the ranking is fused with a vector search, which already ranks items by
    what the words mean. Words then go only down to half of them, in at most
    MAX_ROUNDS_BESIDE_VECTORS rounds, and are judged on the whole catalog's counts, not counted
    again under the filters: that round counts every term of the query, the costliest part of a
    hybrid search's keyword half, and buys what the vector half already gives (items of the
    filtered set that hold none of the words).
    """
    deadline = time.monotonic() + ROUNDS_BUDGET_S
    rounds = 0
    within = None
    if filters.active and not beside_vectors:
        within = await count_within(connection, scope_terms(text, words, synonyms), filters)
        rounds += 1
    groups = word_groups(text, words, synonyms, within)
    fewest = max(1, math.ceil(len(groups) / 2) if beside_vectors else 1)
    most = MAX_ROUNDS_BESIDE_VECTORS if beside_vectors else MAX_ROUNDS
    step = rounds_step(len(groups), fewest, most - rounds)
    found = list(exact)
    while groups and len(found) < FORGIVE_BELOW:
        seen = [h.id for h in found]
        found += await queries.forgiving(
            connection, groups, limit=CANDIDATES - len(found), filters=filters, exclude=seen
        )
        rounds += 1
        if len(groups) <= fewest or rounds >= most or time.monotonic() >= deadline:
            break
        # Fewer words each round: items matching more of them stay ahead of those after.
        groups = loosen(groups, min(step, len(groups) - fewest))
    return found


def _unique(terms: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(terms))
