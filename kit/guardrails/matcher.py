"""Compile a word list into two regular expressions.

Every entry becomes a sequence of *units*: a letter (with its leetspeak
stand-ins, e.g. ``s`` also matches ``$`` and ``5``), possibly stretched
(``fuuuck``), a no-break-space joiner between letters, or a gap of
separators between the words or letters of an entry (``blow job``,
``f-u-c-k``). Entries of three or more characters also get a *spaced* form
whose single letters are separated by spaces, dots, dashes or underscores
(``s h i t``); *root* entries also get their uneven splits (``fu ck``,
``sh it``) and match glued into a compound of at most :data:`MAX_AFFIX` more
letters at the start or end of a token (``fuckface``, ``deltashit``,
``bullshitters``). All forms go into one trie, emitted as a single
alternation so that ``re`` (in C) does the scanning; an empty capturing group
at the end of each path tells which entry matched (``re.Match.lastindex``).
Allow entries (``shitake``, ``cum laude``) sit in the same trie, tried
before compounds, and match any token they begin, so that the words they
shield are consumed and reported as allowed.

A match must start and end on a word boundary of the folded text, so
``Scunthorpe``, ``assessment`` or ``cocktail`` are left alone. A leet symbol
may begin a match (``@ss``) unless it follows another symbol (``**``), which
keeps runs of symbols cheap to scan.

The second expression accepts every *prefix* of a possible match that runs
to the end of the text, and also any unfinished token of at most
``Matcher.open_token`` characters (its folding may still change: a digit, a
script, a compound). A stream holds back text from the first position where
it matches, because only there can text still to come change the verdict.
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
    NUMBER_DIGITS,
    SEPARATORS,
    SYMBOLS,
    normalize,
)
from kit.guardrails.wordlist import ALLOW, MAX_ENTRY_CHARS, Entry

__all__ = ["MAX_AFFIX", "MAX_STRETCH", "Matcher", "compile_words"]

#: Most times one letter may be repeated in a stretched word ("fuuuuck").
MAX_STRETCH = 8
#: Entries with fewer letters are never stretched: "god" must not catch "good".
MIN_STRETCH_LETTERS = 4
#: Most separators between two letters or words of an entry.
MAX_GAP = 3
#: Entries shorter than this get no spaced form ("x x" is not "xx").
MIN_SPACED_CHARS = 3
#: Most letters glued to a root in a compound ("delta" + "shit").
MAX_AFFIX = 12
#: Endings a root may carry at the end of a compound ("bullshitters").
ROOT_ENDINGS = ("s", "es", "y", "er", "ers", "ery", "ing", "ed", "ty", "ter", "ters", "ting", "ted")

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
_AFFIX = f"{_WORD}{{0,{MAX_AFFIX}}}"
_ENDINGS = "(?:" + "|".join(sorted(ROOT_ENDINGS, key=len, reverse=True)) + ")?"


@dataclass(frozen=True)
class _Unit:
    """One step of an entry: a character class repeated ``lo``..``hi`` times
    (or the string ``alt`` instead), then optionally the separators that may
    follow it (``tail``, at most ``tail_hi`` characters, at least ``tail_lo``)."""

    chars: str
    lo: int
    hi: int
    skip_two: bool = False  # stretched single letter: 1 or 3+ times, never 2
    tail: str = ""
    tail_lo: int = 0
    tail_hi: int = 0
    more: str = ""  # characters of a stretch beyond ``lo`` (default: ``chars``)
    alt: str = ""  # a single character that stands for the whole unit ("ß" for "ss")

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
        if self.alt:
            head = f"(?:{head}|{re.escape(self.alt)})"
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


def _chars(c: str) -> str:
    """The characters that may stand for ``c``: its leet symbols; a digit of
    the entry also matches the digit of a number."""
    if c.isdigit() and c.isascii():
        return c + NUMBER_DIGITS[int(c)]
    return LEET.get(c, c)


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
        chars = _chars(c)
        join = dict(tail=NBSP, tail_lo=0, tail_hi=1) if i < len(word) else {}
        alt = "ß" if c == "s" and n == 2 else ""
        if stretch and "a" <= c <= "z":
            # A stretch repeats the letter or its symbols, never another
            # letter: "pastille" is not a stretched "pastie".
            more = "".join(x for x in chars if x == c or not x.isalpha())
            hi = max(n, MAX_STRETCH)
            units.append(_Unit(chars, n, hi, n == 1, more=more, alt=alt, **join))
        else:
            units.append(_Unit(chars, n, n, alt=alt, **join))
    return units


def _folded(word: str) -> str:
    folded, _ = normalize(word)
    folded = folded.strip(SEPARATORS)
    if not any(ch.isalnum() for ch in folded):
        raise ConfigError(
            f"word-list entry {word!r} has no letter or digit: remove it or "
            "spell the word out."
        )
    if len(folded) > MAX_ENTRY_CHARS:
        raise ConfigError(
            f"word-list entry {word[:40]!r}... is {len(folded)} characters; the "
            f"limit is {MAX_ENTRY_CHARS}: shorten it or split it into several entries."
        )
    # Entries are written with plain digits: undo the number stand-ins.
    return folded.translate(str.maketrans(NUMBER_DIGITS, "0123456789"))


def _entry_paths(entry: Entry) -> list[list[_Unit]]:
    """Unit sequences of an entry: its plain form, its spaced form, its splits."""
    folded = _folded(entry.word)
    parts = [p for p in re.split(_SEP + "+", folded) if p]
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
    if entry.category == ALLOW:
        return paths
    if len(parts) == 1 and len(folded) >= MIN_SPACED_CHARS:
        spaced = [
            _Unit(_chars(c), 1, 1, tail=SEPARATORS, tail_lo=1, tail_hi=MAX_GAP)
            for c in folded[:-1]
        ]
        spaced.append(_Unit(_chars(folded[-1]), 1, 1))
        paths.append(spaced)
    if entry.root and len(parts) == 1:
        for cut in range(2, len(folded) - 1):
            paths.append(
                _letter_units(folded[:cut], False) + [_SPELLED_GAP] + _letter_units(folded[cut:], False)
            )
    return paths


class _Node:
    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.children: dict[_Unit, _Node] = {}
        self.entry: Entry | None = None


def _emit(node: _Node, leaves: list[Entry | None]) -> str:
    alts = [unit.regex + _emit(child, leaves) for unit, child in node.children.items()]
    if node.entry is not None:
        leaves.append(node.entry)
        # An allow entry shields every token it begins ("shitakes").
        alts.append("()" + _AFFIX if node.entry.category == ALLOW else "()")
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


def _compounds(roots: list[Entry], leaves: list[Entry | None]) -> tuple[str, int]:
    """The compound forms of ``roots`` and the longest text they span."""
    if not roots:
        return "", 0
    forms = []
    longest = 0
    for place in ("end", "start"):
        alts = []
        for entry in roots:
            units = _letter_units(_folded(entry.word), True)
            longest = max(longest, sum(u.longest for u in units))
            leaves.append(entry)
            alts.append("".join(u.regex for u in units) + "()")
        body = "(?:" + "|".join(alts) + ")"
        if place == "end":
            forms.append(f"{_WORD}{{1,{MAX_AFFIX}}}?{body}{_ENDINGS}")
        else:
            forms.append(f"{body}{_WORD}{{1,{MAX_AFFIX}}}")
    return "|".join(forms), longest + MAX_AFFIX + max(map(len, ROOT_ENDINGS))


class Matcher:
    """Compiled form of an entry list.

    ``full`` finds matches; ``leaves[m.lastindex]`` is the entry a match
    found. ``prefix`` (compiled on first use, since only streams need it)
    finds where a match could still begin.
    """

    def __init__(self, entries: tuple[Entry, ...], root: _Node, roots: list[Entry]) -> None:
        self.entries = entries
        self._root = root
        self._prefix: re.Pattern | None = None
        self._lock = threading.Lock()
        leaves: list[Entry | None] = [None] * (1 + _GROUPS_BEFORE_LEAVES)
        trie = _emit(root, leaves) if root.children else ""
        compounds, compound_len = _compounds(roots, leaves)
        body = "|".join(x for x in (trie, compounds) if x)
        self.full = re.compile(_START + _AFTER_STAR + "(?:" + body + ")" + _END) if body else re.compile(r"(?!)")
        #: Entry of each leaf group, indexed by group number (``lastindex``).
        self.leaves = tuple(leaves)
        longest = _longest(root)
        #: Longest unfinished token the prefix expression keeps alive.
        self.open_token = max(longest, compound_len, MAX_AFFIX) if body else 0
        # Held-back text: at most ``open_token`` folded characters, each one
        # preceded by up to MAX_INVISIBLE_RUN characters that fold to
        # nothing, and as many after the last one.
        n = self.open_token
        self.max_holdback = n + MAX_INVISIBLE_RUN * (n + 1) if n else 0

    @property
    def prefix(self) -> re.Pattern:
        if self._prefix is None:
            with self._lock:
                if self._prefix is None:
                    if self.open_token:
                        alts = [f"(?:{_WORD}|{_SYM}|{NBSP}){{1,{self.open_token}}}\\Z"]
                        if self._root.children:
                            alts.insert(0, _emit_prefix(self._root))
                        self._prefix = re.compile(_START + "(?:" + "|".join(alts) + ")")
                    else:
                        self._prefix = re.compile(r"(?!)")
        return self._prefix


def compile_words(entries: tuple[Entry, ...]) -> Matcher:
    """Build the matcher for ``entries`` (already validated)."""
    root = _Node()
    # Longer entries first, so that their branches are tried first
    # ("a$$hole" is "asshole", not "ass" + "hole"); then entries without
    # separators, so that text matching several entries the same way
    # reports the plain one; allow entries before others of the same shape.
    order = sorted(
        entries,
        key=lambda e: (
            -sum(c.isalnum() for c in e.word),
            sum(c in SEPARATORS for c in e.word),
            e.category != ALLOW,
            e.word,
        ),
    )
    for entry in order:
        for path in _entry_paths(entry):
            node = root
            for unit in path:
                node = node.children.setdefault(unit, _Node())
            if node.entry is None:
                node.entry = entry
    roots = [e for e in entries if e.root and e.category != ALLOW]
    return Matcher(entries, root, roots)
