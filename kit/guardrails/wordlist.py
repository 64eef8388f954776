"""Word lists: the kit's categorised list, better-profanity's, and the caller's.

The default policy's entries come from ``words.txt`` next to this module, each
under a category header, some with flags (``root``, ``name``). The
``better_profanity`` policy uses better-profanity's bundled list, read from the
installed package at run time (never copied into this repository), plus the
kit's seed entries in ``banned_words.txt``; each of those entries takes the
kit's category where the kit lists the same word, ``unsorted`` otherwise.
Callers may add entries (category ``custom``), allow words, or replace the
list altogether.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable
from typing import NamedTuple

from kit.exceptions import ConfigError, SetupError

__all__ = [
    "ALLOW",
    "Entry",
    "KIT_WORDS_FILE",
    "MAX_ENTRY_CHARS",
    "SEED_WORDS_FILE",
    "better_profanity_words",
    "build_entries",
    "kit_entries",
    "kit_words",
    "read_word_file",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The kit's categorised list (the default policy).
KIT_WORDS_FILE = os.path.join(_HERE, "words.txt")
#: The entries the original kit added to better-profanity's list.
SEED_WORDS_FILE = os.path.join(_HERE, "banned_words.txt")
#: Longest entry accepted; it bounds how much text a stream may hold back.
MAX_ENTRY_CHARS = 64
#: Category of the entries that always pass (they shield ordinary words).
ALLOW = "allow"
_FLAGS = ("root", "name")


class Entry(NamedTuple):
    """One entry of a word list."""

    word: str  #: lower case, as written in the list
    category: str  #: a category of kit.guardrails.policy.CATEGORIES, or "allow"
    root: bool = False  #: also matches glued into compounds and split once
    name: bool = False  #: a Title-case spelling is a name and passes


def read_word_file(path: str) -> list[str]:
    """Entries of a word file: one per line, blank lines and ``#`` comments skipped."""
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]


@functools.lru_cache(maxsize=1)
def kit_entries() -> tuple[Entry, ...]:
    """The entries of ``words.txt``, allow entries included, in file order."""
    entries = []
    category = None
    for line in read_word_file(KIT_WORDS_FILE):
        if line.startswith("[") and line.endswith("]"):
            category = line[1:-1]
            continue
        word, *flags = (part.strip() for part in line.split("|"))
        unknown = set(flags) - set(_FLAGS)
        if category is None or unknown:  # pragma: no cover - guarded by the unit tests
            raise SetupError(f"{KIT_WORDS_FILE}: bad line {line!r}")
        entries.append(Entry(word.lower(), category, "root" in flags, "name" in flags))
    return tuple(entries)


@functools.lru_cache(maxsize=1)
def better_profanity_words() -> tuple[str, ...]:
    """better-profanity's bundled word list, read from the installed package."""
    spec = importlib.util.find_spec("better_profanity")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "better-profanity is not installed, and the guard reads its word "
            "list from it: run `pip install better-profanity==0.7.0`."
        )
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "profanity_wordlist.txt")
        if os.path.isfile(path):
            return tuple(read_word_file(path))
    raise SetupError(
        "better-profanity is installed but its profanity_wordlist.txt is "
        "missing: reinstall it with `pip install --force-reinstall "
        "better-profanity==0.7.0`."
    )


@functools.lru_cache(maxsize=1)
def kit_words() -> tuple[str, ...]:
    """The seed's own entries from ``banned_words.txt``."""
    return tuple(read_word_file(SEED_WORDS_FILE))


def _better_profanity_entries() -> list[Entry]:
    known = {e.word: e.category for e in kit_entries() if e.category != ALLOW}
    return [Entry(w.lower(), known.get(w.lower(), "unsorted")) for w in better_profanity_words() + kit_words()]


def _entries(name: str, words: object) -> list[str]:
    if words is None:
        return []
    if isinstance(words, (str, bytes)):
        raise ConfigError(
            f"{name} must be a list of strings, not a single "
            f"{type(words).__name__}: wrap it as [{words!r}]."
        )
    if not isinstance(words, Iterable):
        raise ConfigError(f"{name} must be a list of strings, got {type(words).__name__}.")
    out = []
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise ConfigError(
                f"{name}[{i}] is {type(word).__name__} {word!r}, not a string: "
                "give every entry as text (decode bytes as UTF-8)."
            )
        if not word.strip():
            raise ConfigError(f"{name}[{i}] is empty or blank: remove it.")
        out.append(word.strip())
    return out


def build_entries(
    policy: str = "default",
    words: object = None,
    extra_words: object = None,
    allow_words: object = None,
) -> tuple[Entry, ...]:
    """Validated entries: the policy's list (or ``words``) + extras, minus allowed.

    ``words`` and ``extra_words`` entries get the category ``custom``;
    ``allow_words`` removes entries of that spelling (compared without regard
    to case) and adds allow entries, which also shield the word from roots.
    The result keeps the first occurrence of each (word, category) pair.
    """
    if words is not None:
        base = [Entry(w.lower(), "custom") for w in _entries("words", words)]
    elif policy == "better_profanity":
        base = _better_profanity_entries()
    else:
        base = list(kit_entries())
    base += [Entry(w.lower(), "custom") for w in _entries("extra_words", extra_words)]
    allowed = {w.casefold() for w in _entries("allow_words", allow_words)}
    out: dict[tuple[str, str], Entry] = {}
    for entry in base:
        if entry.word.casefold() not in allowed or entry.category == ALLOW:
            out.setdefault((entry.word, entry.category), entry)
    for word in sorted(allowed):
        out.setdefault((word, ALLOW), Entry(word, ALLOW))
    return tuple(out.values())
