"""Normalised view of a text, with a map back to the original offsets.

Matching runs on a folded copy of the text: lower case, accents and other
combining marks removed, compatibility forms (full-width, circled,
mathematical letters, ligatures) decomposed, Cyrillic/Greek/small-capital
look-alikes replaced by the Latin letter they imitate, invisible format
characters (zero-width space/joiner, soft hyphen, BOM, bidi marks) dropped,
and every kind of space, dash and no-break space reduced to one character.

Most characters fold to exactly one character. Pure-ASCII text takes a fast
path (``str.lower``); otherwise ``str.translate`` does the work in C and only
the few characters that vanish or expand are walked in Python to record where
the offsets shift. A run of more than ``MAX_INVISIBLE_RUN`` invisible
characters turns into hard breaks, which keeps the text a stream must hold
back bounded.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right

__all__ = [
    "HARD_BREAK",
    "MAX_INVISIBLE_RUN",
    "NBSP",
    "NO_SPACE_RANGES",
    "OffsetMap",
    "SEPARATORS",
    "SYMBOLS",
    "fold_char",
    "normalize",
    "require_str",
]

#: Stands for a run of invisible characters too long to be part of a word.
HARD_BREAK = "\x00"
#: Folded form of every no-break space; it can sit between letters of a word.
NBSP = "\xa0"
#: Characters that may separate the letters or words of a banned entry.
SEPARATORS = " .-_" + NBSP
#: Symbols that stand in for letters (leetspeak); they are not word characters.
SYMBOLS = "@$*!+|"
#: Invisible characters tolerated in a row inside a word.
MAX_INVISIBLE_RUN = 3

#: Scripts written without spaces between words (Thai, Lao, Khmer, Myanmar,
#: CJK, kana, Hangul, Yi): a Latin word touching them is still a word.
NO_SPACE_RANGES = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u2e80-\u2fdf"
    "\u3040-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\ua960-\ua97f"
    "\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\U00020000-\U0003134f"
)
_NO_SPACE = re.compile("[" + NO_SPACE_RANGES + "]")

# Look-alikes that Unicode normalisation leaves alone, keyed by the Latin
# letter (or string) they imitate.
_LOOKALIKES = {
    "a": "аАαΑɑᴀ",
    "ae": "æÆ",
    "b": "вВβΒʙьЬ",
    "c": "сСϲϹᴄ",
    "d": "ԁᴅđĐðÐ",
    "e": "еЕεΕᴇ",
    "f": "ꜰ",
    "g": "ɡɢ",
    "h": "нНһҺΗʜħĦ",
    "i": "іІїЇιΙɪıɩ",
    "j": "јЈϳᴊ",
    "k": "кКκΚᴋĸ",
    "l": "ʟӏӀłŁŀĿ",
    "m": "мМΜᴍ",
    "n": "пηΝɴ",
    "o": "оОοΟσᴏøØ",
    "oe": "œŒ",
    "p": "рРρΡᴘ",
    "q": "ԛ",
    "r": "гᴦʀ",
    "s": "ѕЅꜱ",
    "t": "тТτΤᴛŧŦ",
    "u": "υμᴜ",
    "v": "νᴠѵ",
    "w": "ԝωᴡ",
    "x": "хХχΧ",
    "y": "уУγΥʏү",
    "z": "Ζζᴢ",
    # Punctuation that plays the role of a separator or a leet symbol.
    ".": "·•∙・",
    "-": "−⁃",
    "!": "¡",
    NBSP: "\u00a0\u2007\u202f",
}
_SPECIAL = {ch: rep for rep, chars in _LOOKALIKES.items() for ch in chars}


def _is_word(ch: str) -> bool:
    return ch.isalnum() and not _NO_SPACE.match(ch)


def fold_char(ch: str) -> str:
    """Return the folded form of one character ("" when it is invisible)."""
    rep = _SPECIAL.get(ch)
    if rep is not None:
        return rep
    if ch.isascii():
        return ch.lower()
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me", "Cf"):
        return ""
    if cat == "Zs":
        return " "
    if cat in ("Zl", "Zp"):
        return "\n"
    if cat == "Pd":
        return "-"
    if cat in ("Cs", "Co", "Cn") or _NO_SPACE.match(ch):
        return ch
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        for c in part.casefold():
            if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
                continue
            out.append(_SPECIAL.get(c, c))
    folded = "".join(out)
    if len(folded) == 1 and folded.isdecimal() and not folded.isascii():
        folded = str(unicodedata.decimal(folded))
    if len(folded) > 1:
        # An expansion must be all word characters ("ffi", "ss") or hold no
        # word character and no leet symbol ("..."), so that a match can never
        # begin or end in the middle of one original character.
        words = sum(map(_is_word, folded))
        if words != len(folded) and (words or any(c in SYMBOLS for c in folded)):
            return ch
    return folded


def require_str(value: object, name: str = "text") -> None:
    """Raise TypeError unless ``value`` is a str (bytes must be decoded first)."""
    if isinstance(value, str):
        return
    kind = type(value).__name__
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{name} must be str, got {kind}: decode it as UTF-8 first, "
            "e.g. data.decode('utf-8')."
        )
    raise TypeError(f"{name} must be str, got {kind}.")


class _FoldTable(dict):
    """``str.translate`` table filled lazily: code point -> folded string."""

    _LIMIT = 200_000

    def __init__(self) -> None:
        super().__init__()
        #: Characters that do not fold to exactly one character.
        self.odd: set[str] = set()
        self._odd_re: re.Pattern | None = None
        self._odd_len = 0
        for code in range(128):
            self[code] = chr(code).lower()

    def __missing__(self, code: int) -> str:
        folded = fold_char(chr(code))
        if len(folded) != 1:
            self.odd.add(chr(code))
        if len(self) < self._LIMIT:
            self[code] = folded
        return folded

    def odd_pattern(self) -> re.Pattern | None:
        if self._odd_len != len(self.odd):
            chars = sorted(self.odd)
            self._odd_re = re.compile("[" + "".join(map(re.escape, chars)) + "]+")
            self._odd_len = len(chars)
        return self._odd_re if self._odd_len else None


_TABLE = _FoldTable()


class OffsetMap:
    """Maps offsets of a folded text back to the text it was folded from.

    The folded text is cut into segments; a segment either maps one to one
    onto the original (``exp`` false) or is the expansion of a single
    original character (``exp`` true). Characters that vanished sit between
    two segments.
    """

    __slots__ = ("_n", "_o", "_x")

    def __init__(self) -> None:
        self._n: list[int] = []
        self._o: list[int] = []
        self._x: list[bool] = []

    def _add(self, n: int, o: int, exp: bool) -> None:
        if (
            not exp
            and self._n
            and not self._x[-1]
            and o - self._o[-1] == n - self._n[-1]
        ):
            return  # continues the previous one-to-one segment
        self._n.append(n)
        self._o.append(o)
        self._x.append(exp)

    def start(self, i: int) -> int:
        """Original offset of the character at folded offset ``i``."""
        j = bisect_right(self._n, i) - 1
        return self._o[j] if self._x[j] else self._o[j] + i - self._n[j]

    def end(self, i: int) -> int:
        """Original offset just after the character at folded offset ``i - 1``."""
        j = bisect_right(self._n, i - 1) - 1
        return self._o[j] + 1 if self._x[j] else self._o[j] + i - self._n[j]


def normalize(text: str) -> tuple[str, OffsetMap | None]:
    """Fold ``text``; the map is None when offsets are unchanged."""
    if text.isascii():
        return text.lower(), None
    table = _TABLE
    folded = text.translate(table)
    odd = table.odd_pattern()
    if odd is None or odd.search(text) is None:
        return folded, None
    omap = OffsetMap()
    pieces = []
    npos = last = 0
    for m in odd.finditer(text):
        s, e = m.span()
        if s > last:
            omap._add(npos, last, False)
            pieces.append(text[last:s].translate(table))
            npos += s - last
        run = 0
        for o in range(s, e):
            rep = table[ord(text[o])]
            if not rep:
                run += 1
                if run <= MAX_INVISIBLE_RUN:
                    continue
                rep = HARD_BREAK
            else:
                run = 0
            omap._add(npos, o, len(rep) != 1)
            pieces.append(rep)
            npos += len(rep)
        last = e
    if last < len(text):
        omap._add(npos, last, False)
        pieces.append(text[last:].translate(table))
    return "".join(pieces), omap
