"""The banned-word list: better-profanity's bundled list plus the kit's own.

better-profanity's list is read from the installed package at run time (it
is never copied into this repository); ``banned_words.txt`` next to this
module adds the kit's entries. Callers may add entries, remove entries, or
replace the default list altogether.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable

from kit.exceptions import ConfigError, SetupError

__all__ = [
    "KIT_WORDS_FILE",
    "MAX_ENTRY_CHARS",
    "better_profanity_words",
    "build_words",
    "default_words",
    "kit_words",
    "read_word_file",
]

KIT_WORDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "banned_words.txt")
#: Longest entry accepted; it bounds how much text a stream may hold back.
MAX_ENTRY_CHARS = 64


def read_word_file(path: str) -> list[str]:
    """Entries of a word file: one per line, blank lines and ``#`` comments skipped."""
    with open(path, encoding="utf-8") as fh:
        return [
            line.strip()
            for line in fh
            if line.strip() and not line.lstrip().startswith("#")
        ]


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
    """The kit's own entries from ``banned_words.txt``."""
    return tuple(read_word_file(KIT_WORDS_FILE))


def default_words() -> tuple[str, ...]:
    """better-profanity's list followed by the kit's list."""
    return better_profanity_words() + kit_words()


def _entries(name: str, words: object) -> list[str]:
    if words is None:
        return []
    if isinstance(words, (str, bytes)):
        raise ConfigError(
            f"{name} must be a list of strings, not a single "
            f"{type(words).__name__}: wrap it as [{words!r}]."
        )
    if not isinstance(words, Iterable):
        raise ConfigError(
            f"{name} must be a list of strings, got {type(words).__name__}."
        )
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


def build_words(
    words: object = None, extra_words: object = None, allow_words: object = None
) -> tuple[str, ...]:
    """Validated entry list: ``words`` (None: the defaults) + extras - allowed.

    Entries are compared without regard to case; the result keeps the first
    spelling of each entry, lower-cased, in list order.
    """
    base = list(default_words()) if words is None else _entries("words", words)
    base += _entries("extra_words", extra_words)
    allowed = {w.casefold() for w in _entries("allow_words", allow_words)}
    seen: dict[str, None] = {}
    for word in base:
        key = word.casefold()
        if key not in allowed:
            seen.setdefault(key, None)
    return tuple(seen)
