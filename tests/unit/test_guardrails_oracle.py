"""better-profanity as an oracle: whatever it flags in a large generated
corpus, the guard with the better_profanity policy (the seed's list) flags too."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from better_profanity import Profanity

from kit.guardrails import Guard, wordlist
from kit.guardrails.normalize import is_number

# Sentences around each word: punctuation on both sides, start and end of
# text, words of context (kept short: better-profanity's cost grows fast
# with the number of words).
TEMPLATES = [
    "{w}",
    "Oh, {w}!",
    "So {w}.",
    "Well... {w}? Ok.",
    "({w})",
    "Said: {w}; bye.",
    "{w}, honestly",
    "No - {w} - no.",
]


def _bp_variants(profanity: Profanity, word: str, rng: random.Random) -> list[str]:
    """The word, its upper-case form, and leetspeak spellings drawn from
    better-profanity's own substitution table (the spellings it matches)."""
    mapping = profanity.CHARS_MAPPING
    word = word.lower()
    out = [word, word.upper()]
    slots = [i for i, c in enumerate(word) if c in mapping]
    if slots:
        for k in (1, 2):  # every letter swapped, cycling through its options
            out.append(
                "".join(
                    mapping[c][(i + k) % len(mapping[c])] if c in mapping else c
                    for i, c in enumerate(word)
                )
            )
        chars = list(word)  # one random mix
        for i in slots:
            chars[i] = rng.choice(mapping[word[i]])
        out.append("".join(chars))
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def seed_guard() -> Guard:
    return Guard(policy="better_profanity")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    profanity = Profanity()
    rng = random.Random(20240611)
    templates = itertools.cycle(TEMPLATES)
    sentences = []
    for word in wordlist.better_profanity_words():
        for variant in _bp_variants(profanity, word, rng):
            sentences.append(next(templates).format(w=variant))
    return sentences


def _spelled_as_number(sentence: str) -> bool:
    """Whether a digit of the sentence sits in a number (``45sb4ng``, ``a5$3$``),
    where the kit reads digits as digits, never as letters."""
    return any(re.search("[0-9]", t) and is_number(t) for t in re.findall(r"[^\W_]+", sentence.lower()))


def test_corpus_covers_every_entry_and_variants(corpus):
    """The corpus has every list entry and several leetspeak variants of most."""
    words = wordlist.better_profanity_words()
    assert len(corpus) > 3 * len(words)
    joined = "\n".join(corpus)
    assert all(w.lower() in joined for w in words)
    assert "@$$" in joined or "4$$" in joined or "*$5" in joined


def test_guard_flags_whatever_better_profanity_flags(corpus, seed_guard):
    """Every corpus sentence better-profanity flags is flagged by the guard too."""
    profanity = Profanity()
    guard = seed_guard
    flagged = [s for s in corpus if profanity.contains_profanity(s)]
    numbers = [s for s in flagged if _spelled_as_number(s)]
    missed = [s for s in flagged if not guard.is_profane(s) and s not in numbers]
    assert not missed, f"{len(missed)} misses, e.g. {missed[:10]}"
    # The oracle must have a say on most of the corpus for this to mean much,
    # and spellings with digits inside numbers must stay a small share.
    assert len(flagged) > 0.8 * len(corpus)
    assert len(numbers) < 0.1 * len(flagged)


def test_guard_flags_the_whole_corpus(corpus, seed_guard):
    """The guard flags every sentence, including those better-profanity misses."""
    guard = seed_guard
    missed = [s for s in corpus if not guard.is_profane(s) and not _spelled_as_number(s)]
    assert not missed, f"{len(missed)} misses, e.g. {missed[:10]}"


def test_guard_flags_what_better_profanity_flags_in_prose(seed_guard):
    """On prose with profanity sprinkled in, every sentence better-profanity
    censors is flagged by the guard as well."""
    from kit.guardrails.bench import make_text

    profanity = Profanity()
    guard = seed_guard
    text = make_text(3, seed=7, bad_every=12)
    sentences = [s for s in text.replace("!", ".").replace("?", ".").split(". ") if s]
    flagged = [s for s in sentences if profanity.contains_profanity(s)]
    assert len(flagged) > 10
    assert [s for s in flagged if not guard.is_profane(s)] == []
