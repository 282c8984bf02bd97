"""Typo tolerance rules and the order in which words are let go (no database needed)."""

from __future__ import annotations

from webapp.search.forgive import corrections, load_synonyms, loosen, word_groups

WORDS = {"jacket": 40, "denim": 12, "cashmere": 3, "sweater": 9, "wool": 20, "tote": 2, "trench": 1, "coat": 8}


def test_one_edit_from_four_letters_two_from_eight() -> None:
    assert corrections("jaket", WORDS) == ["jacket"]  # a letter missing
    assert corrections("jakcet", WORDS) == ["jacket"]  # two letters swapped count once
    assert corrections("jackeet", WORDS) == ["jacket"]
    assert corrections("jaaket", WORDS) == ["jacket"]
    assert corrections("jkaet", WORDS) == []  # two edits on a 5-letter word: too far
    assert corrections("cashmre", WORDS) == ["cashmere"]
    assert corrections("cashmeer", WORDS) == ["cashmere"]  # 8 letters: a swap allowed
    assert corrections("cahsmeer", WORDS) == ["cashmere"]  # 8 letters: two edits
    assert corrections("wol", WORDS) == []  # under 4 letters: none
    assert corrections("denim", WORDS) == []  # known words stay as typed
    assert corrections("501s", WORDS) == []  # model numbers are not corrected


def test_groups_carry_synonyms_corrections_and_the_last_word_as_a_prefix() -> None:
    groups = word_groups("wool jumper jack", WORDS, load_synonyms())
    assert [g.word for g in groups] == ["wool", "jumper", "jack"]
    assert "sweater" in groups[1].alternatives
    assert groups[2].prefix and groups[2].items >= 40  # "jack" begins "jacket"
    assert not groups[0].prefix
    # Two-word synonyms are one group, and common little words none.
    assert [g.word for g in word_groups("a body warmer for the cold", WORDS, load_synonyms())] == [
        "body warmer",
        "cold",
    ]


def test_words_are_let_go_unknown_first_then_corrected_then_the_commonest() -> None:
    groups = word_groups("trench cote zzqx", WORDS, load_synonyms())
    assert [g.word for g in groups] == ["trench", "cote", "zzqx"]
    groups = loosen(groups)
    assert [g.word for g in groups] == ["trench", "cote"]  # zzqx: no item holds it
    groups = loosen(groups)
    assert [g.word for g in groups] == ["trench"]  # "cote" is only a correction ("tote")
    groups = loosen(word_groups("wool denim jacket", WORDS, load_synonyms()))
    assert [g.word for g in groups] == ["wool", "denim"]  # "jacket" is the commonest
