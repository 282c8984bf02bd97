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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import OSA

SYNONYMS_FILE = Path(__file__).with_name("synonyms.txt")
# Most alternatives one word may bring (corrections plus synonyms); keeps the query small.
MAX_ALTERNATIVES = 6
# Words of a query that count (stopwords aside): more than any shopper types, and the rest of
# a pasted paragraph adds nothing a vector search would not find.
MAX_WORDS = 10
# SQL rounds of loosening per ranking, and the time after which no further round starts.
MAX_ROUNDS = 4
ROUNDS_BUDGET_S = 0.5
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
    edits = allowed_edits(word)
    if edits == 0 or word in vocabulary or any(ch.isdigit() for ch in word):
        return []
    matches = process.extract(word, list(vocabulary), scorer=OSA.distance, score_cutoff=edits, limit=limit * 4)
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


def rounds_step(words: int, fewest: int) -> int:
    """Groups to let go per round so that MAX_ROUNDS rounds go from ``words`` down to ``fewest``."""
    return max(1, math.ceil((words - fewest) / max(1, MAX_ROUNDS - 1)))


def word_groups(text: str, vocabulary: dict[str, int], synonyms: dict[str, tuple[str, ...]]) -> list[WordGroup]:
    """The query's words (the first MAX_WORDS that say something) with their corrections and
    synonyms; two-word synonyms are found first."""
    words = _WORD.findall(text.lower())
    groups: list[WordGroup] = []
    index = 0
    while index < len(words) and len(groups) < MAX_WORDS:
        pair = " ".join(words[index : index + 2])
        if index + 1 < len(words) and pair in synonyms:
            others = synonyms[pair][:MAX_ALTERNATIVES]
            groups.append(WordGroup(pair, others, items=sum(_items(t, vocabulary) for t in (pair, *others))))
            index += 2
            continue
        word = words[index]
        last = index == len(words) - 1
        index += 1
        if word in STOPWORDS:
            continue
        typing = last and any(known.startswith(word) for known in vocabulary)
        fixed = [] if typing else corrections(word, vocabulary)
        alternatives = _unique(
            [*fixed, *synonyms.get(word, ()), *(s for f in fixed for s in synonyms.get(f, ()))]
        )
        kept = tuple(alternatives[:MAX_ALTERNATIVES])
        prefix = last and word.isalnum()
        found = sum(_items(t, vocabulary) for t in (word, *kept))
        if prefix:
            found += sum(n for known, n in vocabulary.items() if known.startswith(word) and known != word)
        groups.append(WordGroup(word, kept, prefix=prefix, items=found, known=word in vocabulary))
    return groups


def _unique(terms: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(terms))
