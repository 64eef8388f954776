"""Compile a banned-word list into two regular expressions.

Every entry becomes a sequence of *units*: a letter (with its leetspeak
stand-ins, e.g. ``s`` also matches ``$`` and ``5``), possibly stretched
(``fuuuck``), a no-break-space joiner between letters, or a gap of
separators between the words or letters of an entry (``blow job``,
``f-u-c-k``). Entries of three or more characters also get a *spaced* form
whose single letters are separated by spaces, dots, dashes or underscores
(``s h i t``). All forms go into one trie, emitted as a single alternation so
that ``re`` (in C) does the scanning; an empty capturing group at the end of
each path tells which entry matched (``re.Match.lastindex``).

A match must start and end on a word boundary of the folded text, so
``Scunthorpe``, ``assessment`` or ``cocktail`` are left alone. A leet symbol
may begin a match (``@ss``) unless it follows another symbol (``**``), which
keeps runs of symbols cheap to scan.

The second expression accepts every *prefix* of a possible match that runs
to the end of the text. A stream holds back text from the first position
where it matches, because only there can text still to come change the
verdict.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from kit.exceptions import ConfigError
from kit.guardrails.normalize import (
    MAX_INVISIBLE_RUN,
    NBSP,
    NO_SPACE_RANGES,
    SEPARATORS,
    SYMBOLS,
    normalize,
)
from kit.guardrails.wordlist import MAX_ENTRY_CHARS

__all__ = ["Matcher", "MAX_STRETCH", "compile_words"]

#: Most times one letter may be repeated in a stretched word ("fuuuuck").
MAX_STRETCH = 8
#: Entries with fewer letters are never stretched: "god" must not catch "good".
MIN_STRETCH_LETTERS = 4
#: Most separators between two letters or words of an entry.
MAX_GAP = 3
#: Entries shorter than this get no spaced form ("x x" is not "xx").
MIN_SPACED_CHARS = 3

# Leetspeak stand-ins, a superset of better-profanity's own substitutions.
LEET = {
    "a": "a@4*",
    "e": "e3*",
    "i": "il1!|*",
    "l": "l1|",
    "o": "o0@*",
    "s": "s$5",
    "t": "t7+",
    "u": "uv*",
    "v": "vu*",
}

_WORD = "[^\\W_" + NO_SPACE_RANGES + "]"
_SYM = "[" + re.escape(SYMBOLS) + "]"
_SEP = "[" + re.escape(SEPARATORS) + "]"
# A match starts after a non-word character, and either on a word character
# or after something that is not a leet symbol either.
_START = f"(?<!{_WORD})(?:(?={_WORD})|(?<!{_SYM}))"
# A match that ends on a word character must end before a non-word one; one
# that ends on a symbol ("sh!+", "a$$") is complete whatever follows. This
# keeps every decision about a match inside the match and the character
# after it, which is what lets a stream cut its output safely. A trailing
# "*" is not a letter when the match follows a "*" (Markdown emphasis such
# as "*word*" or "**word**"), nor when another "*" follows.
_AFTER_STAR = "(?:(?<=\\*)(?P<star>)|)"
_END = f"(?:(?<!{_WORD})|(?!{_WORD}))(?!(?<=\\*)\\*)(?(star)(?<!\\*))"
#: Capturing groups before the first leaf group of the full expression.
_GROUPS_BEFORE_LEAVES = 1


@dataclass(frozen=True)
class _Unit:
    """One step of an entry: a character class repeated ``lo``..``hi`` times,
    then optionally the separators that may follow it (``tail``, at most
    ``tail_hi`` characters, at least ``tail_lo``)."""

    chars: str
    lo: int
    hi: int
    skip_two: bool = False  # stretched single letter: 1 or 3+ times, never 2
    tail: str = ""
    tail_lo: int = 0
    tail_hi: int = 0
    more: str = ""  # characters of a stretch beyond ``lo`` (default: ``chars``)

    @staticmethod
    def _cls(chars: str) -> str:
        if len(chars) == 1:
            return re.escape(chars)
        return "[" + "".join(re.escape(c) for c in chars) + "]"

    @property
    def regex(self) -> str:
        c = self._cls(self.chars)
        m = self._cls(self.more) if self.more else c
        if self.skip_two:
            head = f"{c}(?:{m}{{2,{self.hi - 1}}})?"
        elif self.lo == self.hi:
            head = c if self.lo == 1 else f"{c}{{{self.lo}}}"
        elif m == c:
            head = f"{c}{{{self.lo},{self.hi}}}"
        else:
            head = (c if self.lo == 1 else f"{c}{{{self.lo}}}") + f"{m}{{0,{self.hi - self.lo}}}"
        if not self.tail_hi:
            return head
        t = self._cls(self.tail)
        if (self.tail_lo, self.tail_hi) == (0, 1):
            return head + t + "?"
        return head + f"{t}{{{self.tail_lo},{self.tail_hi}}}"

    @property
    def longest(self) -> int:
        return self.hi + self.tail_hi

    @property
    def short_counts(self) -> list[tuple[int, int]]:
        """Letter counts (lo, hi) that begin this unit without being accepted by it."""
        counts = []
        if self.lo > 1:
            counts.append((1, self.lo - 1))
        if self.skip_two:
            counts.append((2, 2))
        if self.tail_lo > 0:
            counts.append((self.lo, self.hi))
        return counts


# Separators between the words of an entry ("blow job", "f-u-c-k"); none
# is fine too ("blowjob").
_GAP = _Unit(SEPARATORS, 0, MAX_GAP)
_SPELLED_GAP = _Unit(SEPARATORS, 1, MAX_GAP)


def _letter_units(word: str, stretch: bool) -> list[_Unit]:
    """Units of one word; a no-break space may join two letters."""
    units: list[_Unit] = []
    i = 0
    while i < len(word):
        c = word[i]
        n = 1
        while i + n < len(word) and word[i + n] == c:
            n += 1
        i += n
        chars = LEET.get(c, c)
        join = dict(tail=NBSP, tail_lo=0, tail_hi=1) if i < len(word) else {}
        if stretch and "a" <= c <= "z":
            # A stretch repeats the letter or its symbols, never another
            # letter: "pastille" is not a stretched "pastie".
            more = "".join(x for x in chars if x == c or not x.isalpha())
            hi = max(n, MAX_STRETCH)
            units.append(_Unit(chars, n, hi, n == 1, more=more, **join))
        else:
            units.append(_Unit(chars, n, n, **join))
    return units


def _entry_paths(entry: str) -> list[list[_Unit]]:
    """Unit sequences of an entry: its plain form, then its spaced form."""
    folded, _ = normalize(entry)
    folded = folded.strip(SEPARATORS)
    parts = [p for p in re.split(_SEP + "+", folded) if p]
    if not any(ch.isalnum() for ch in folded):
        raise ConfigError(
            f"word-list entry {entry!r} has no letter or digit: remove it or "
            "spell the word out."
        )
    if len(folded) > MAX_ENTRY_CHARS:
        raise ConfigError(
            f"word-list entry {entry[:40]!r}... is {len(folded)} characters; the "
            f"limit is {MAX_ENTRY_CHARS}: shorten it or split it into several entries."
        )
    stretch = sum(ch.isalnum() for ch in folded) >= MIN_STRETCH_LETTERS
    # A spelled-out entry ("s-o-b", "f.u.c.k") needs its separators: run
    # together it may be an ordinary word ("sob").
    gap = _SPELLED_GAP if all(len(p) == 1 for p in parts) else _GAP
    plain: list[_Unit] = []
    for part in parts:
        if plain:
            plain.append(gap)
        plain.extend(_letter_units(part, stretch))
    paths = [plain]
    if len(parts) == 1 and len(folded) >= MIN_SPACED_CHARS:
        spaced = [
            _Unit(LEET.get(c, c), 1, 1, tail=SEPARATORS, tail_lo=1, tail_hi=MAX_GAP)
            for c in folded[:-1]
        ]
        spaced.append(_Unit(LEET.get(folded[-1], folded[-1]), 1, 1))
        paths.append(spaced)
    return paths


class _Node:
    __slots__ = ("children", "word")

    def __init__(self) -> None:
        self.children: dict[_Unit, _Node] = {}
        self.word: str | None = None


def _emit(node: _Node, words: list[str]) -> str:
    alts = [unit.regex + _emit(child, words) for unit, child in node.children.items()]
    if node.word is not None:
        words.append(node.word)
        alts.append("()")
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")"


def _emit_prefix(node: _Node) -> str:
    if not node.children:
        return r"\Z"
    alts = [unit.regex + _emit_prefix(child) for unit, child in node.children.items()]
    # Beginnings of a unit that the unit itself does not accept: fewer
    # letters than the entry has, a stretched letter typed exactly twice, or
    # a letter whose separator has not arrived yet.
    short = {
        _Unit(unit.chars, lo, hi).regex
        for unit in node.children
        for lo, hi in unit.short_counts
    }
    alts.extend(sorted(r + r"\Z" for r in short))
    alts.append(r"\Z")
    return "(?:" + "|".join(alts) + ")"


def _longest(node: _Node) -> int:
    return max((u.longest + _longest(c) for u, c in node.children.items()), default=0)


class Matcher:
    """Compiled form of an entry list.

    ``full`` finds matches; ``prefix`` (compiled on first use, since only
    streams need it) finds where a match could still begin.
    """

    def __init__(self, words: tuple[str, ...], root: _Node) -> None:
        self.words = words
        self._root = root
        self._prefix: re.Pattern | None = None
        self._lock = threading.Lock()
        leaf_words: list[str] = [""] * (1 + _GROUPS_BEFORE_LEAVES)
        if root.children:
            self.full = re.compile(_START + _AFTER_STAR + _emit(root, leaf_words) + _END)
        else:
            self.full = re.compile(r"(?!)")
        #: Entry of each leaf group, indexed by group number (``lastindex``).
        self.leaf_words = tuple(leaf_words)
        longest = _longest(root)
        # Held-back text: at most ``longest`` folded characters, each one
        # preceded by up to MAX_INVISIBLE_RUN characters that fold to
        # nothing, and as many after the last one.
        self.max_holdback = longest + MAX_INVISIBLE_RUN * (longest + 1) if longest else 0

    @property
    def prefix(self) -> re.Pattern:
        if self._prefix is None:
            with self._lock:
                if self._prefix is None:
                    if self._root.children:
                        self._prefix = re.compile(_START + _emit_prefix(self._root))
                    else:
                        self._prefix = re.compile(r"\Z")
        return self._prefix


def compile_words(words: tuple[str, ...]) -> Matcher:
    """Build the matcher for ``words`` (already validated strings)."""
    root = _Node()
    # Longer entries first, so that their branches are tried first
    # ("a$$hole" is "asshole", not "ass" + "hole"); then entries without
    # separators, so that text matching several entries the same way
    # reports the plain one.
    order = sorted(
        words,
        key=lambda w: (-sum(c.isalnum() for c in w), sum(c in SEPARATORS for c in w), w),
    )
    for word in order:
        for path in _entry_paths(word):
            node = root
            for unit in path:
                node = node.children.setdefault(unit, _Node())
            if node.word is None:
                node.word = word
    return Matcher(words, root)
