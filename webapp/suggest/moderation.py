"""What is never suggested, whoever searched it: the shipped list of words and phrases, and
anything that reads as a web or email address (a completion is the one place a stranger's text
reaches every shopper)."""

from __future__ import annotations

import re
from pathlib import Path

NEVER_SUGGESTED_FILE = Path(__file__).resolve().parent.parent / "search" / "never_suggested.txt"
_WORD = re.compile(r"[a-z0-9]+")
# scheme://, www., user@host, or a host name in a common top-level domain ("scam-shop.example",
# "x.co.uk"); brands with a dot in them ("j.crew", "a.p.c.") are not host names.
_TLDS = "com|net|org|info|biz|io|co|uk|us|eu|de|fr|ru|cn|shop|store|online|site|xyz|top|app|me|ly|example"
_ADDRESS = re.compile(rf"://|\bwww\.|\S@\S|[a-z0-9-]+\.(?:{_TLDS})\b")


class BlockList:
    """Phrases (as word sequences) that a suggestion may not hold."""

    def __init__(self, phrases: list[str]) -> None:
        self.phrases = [tuple(_WORD.findall(p.lower())) for p in phrases]
        self.phrases = [p for p in self.phrases if p]

    @classmethod
    def load(cls, path: Path = NEVER_SUGGESTED_FILE) -> BlockList:
        lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
        return cls([line for line in lines if line])

    def blocks(self, query: str) -> bool:
        text = query.lower()
        if _ADDRESS.search(text):
            return True
        words = _WORD.findall(text)
        for phrase in self.phrases:
            size = len(phrase)
            if any(tuple(words[n : n + size]) == phrase for n in range(len(words) - size + 1)):
                return True
        return False
