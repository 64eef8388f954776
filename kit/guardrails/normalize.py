"""Normalised view of a text, with a map back to the original offsets.

Matching runs on a folded copy of the text: lower case, accents and other
combining marks removed, compatibility forms (full-width, circled,
mathematical letters, ligatures) decomposed, invisible format characters
(zero-width space/joiner, soft hyphen, BOM, bidi marks) dropped, and every
kind of space, dash and no-break space reduced to one character.

Three decisions look at a whole token (a run of letters and digits) rather
than one character, so that ordinary text in any language keeps its meaning:

* **Look-alikes** (Unicode's confusables, UTS #39, see
  :mod:`kit.guardrails.confusables`): a Latin-script or Common look-alike
  (``ꜱ``, ``ɑ``, ``ı``) always folds to its Latin letter; a letter of another
  script (Cyrillic ``р``, Greek ``υ``) folds only where it disguises a word —
  in a token that mixes scripts (``ѕhіt``), or in a token wholly of one
  foreign script whose previous word, within :data:`CONTEXT_CHARS`
  characters, is Latin (``you ЅНІТ``). Russian ``у него болит рот`` stays
  Russian.
* **Numbers are numbers**: a digit stands for a letter (``5h1t``, ``a55hole``)
  only in a token that also has letters, is not a hexadecimal group
  (``b00b``, ``7e47``) and does not start with two digits (``45s``,
  ``100ms``). Digits of other tokens (``455``, ``10.4.5.5``, UUIDs) are
  replaced one for one by Arabic-Indic digits, which no leetspeak class
  accepts.
* **ß** folds to ``ß`` and is accepted for ``ss`` inside an entry, except in
  the ordinary words of :data:`SHARP_S_WORDS` (German ``aß``, "ate").

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

from kit.guardrails import confusables

__all__ = [
    "CONTEXT_CHARS",
    "HARD_BREAK",
    "MAX_INVISIBLE_RUN",
    "NBSP",
    "NO_SPACE_RANGES",
    "NUMBER_DIGITS",
    "OffsetMap",
    "SEPARATORS",
    "SHARP_S_WORDS",
    "SYMBOLS",
    "extend_marks",
    "fold_char",
    "is_number",
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
#: How far back (characters) a token looks for the previous word's script.
CONTEXT_CHARS = 40
#: Stand-ins for the digits of a number (Arabic-Indic digits 0-9).
NUMBER_DIGITS = "".join(chr(0x660 + d) for d in range(10))
#: Ordinary words whose ß must not read as "ss" (the folded form is an entry).
SHARP_S_WORDS = frozenset({"aß"})
_SHARP_S_KEPT = "\u1e9e"  # capital sharp s: a letter no entry accepts

#: Scripts written without spaces between words (Thai, Lao, Khmer, Myanmar,
#: CJK, kana, Hangul, Yi): a Latin word touching them is still a word.
NO_SPACE_RANGES = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u2e80-\u2fdf"
    "\u3040-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\ua960-\ua97f"
    "\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\U00020000-\U0003134f"
)
_NO_SPACE = re.compile("[" + NO_SPACE_RANGES + "]")

# Latin letters with strokes and small capitals that neither Unicode
# normalisation nor the confusables data turn into a plain letter, and
# punctuation that plays the role of a separator or a leet symbol.
_LATIN_EXTRA = {
    "b": "ʙ",
    "d": "đĐðÐᴅ",
    "f": "ꜰ",
    "g": "ɢ",
    "h": "ʜħĦ",
    "k": "ᴋĸ",
    "l": "ʟłŁŀĿ",
    "m": "ᴍ",
    "n": "ɴ",
    "o": "øØᴏ",
    "r": "ʀᴦ",
    "t": "ᴛŧŦ",
    "ae": "æÆ",
    "oe": "œŒ",
    ".": "·•∙・",
    "-": "−⁃",
    "!": "¡",
    NBSP: "\u00a0\u2007\u202f",
}


def _tables() -> tuple[dict[str, str], dict[str, str]]:
    always = {ch: rep for rep, chars in _LATIN_EXTRA.items() for ch in chars}
    context = {}
    for ch, (letter, scr) in confusables.load().items():
        if scr in confusables.EVERYWHERE:
            always.setdefault(ch, letter)
        else:
            context[ch] = letter
    return always, context


#: Look-alikes folded everywhere, and those folded only where they disguise a word.
_ALWAYS, _CONTEXT = _tables()
_CONTEXT_CLASS = "".join(sorted(_CONTEXT))
_DISGUISE = re.compile(f"[^\\W_]*[{re.escape(_CONTEXT_CLASS)}][^\\W_]*")
_TOKEN = re.compile(r"[^\W_]+")
_DIGIT = re.compile("[0-9]")
_NUMBER_TOKEN = re.compile(r"[^\W_]*[0-9][^\W_]*")
_TO_NUMBER = str.maketrans("0123456789", NUMBER_DIGITS)
_HEX = frozenset("0123456789abcdef")
_SHARP_TOKEN = re.compile(r"[^\W_]*ß[^\W_]*")


def _is_word(ch: str) -> bool:
    return ch.isalnum() and not _NO_SPACE.match(ch)


def fold_char(ch: str) -> str:
    """Return the context-free folded form of one character ("" when it is invisible)."""
    rep = _ALWAYS.get(ch)
    if rep is not None:
        return rep
    if ch.isascii():
        return ch.lower()
    if ch in "ßẞ":
        return "ß"
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
            out.append(_ALWAYS.get(c, c))
    folded = "".join(out)
    if len(folded) == 1 and folded.isdecimal() and not folded.isascii():
        folded = str(unicodedata.decimal(folded))
    if len(folded) > 1:
        # An expansion must be all word characters ("ffi") or hold no word
        # character and no leet symbol ("..."), so that a match can never
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


def extend_marks(text: str, end: int) -> int:
    """``end`` moved past the combining marks (at most MAX_INVISIBLE_RUN) that follow it."""
    stop = min(len(text), end + MAX_INVISIBLE_RUN)
    while end < stop and unicodedata.category(text[end]) in ("Mn", "Me"):
        end += 1
    return end


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
        if not exp and self._n and not self._x[-1] and o - self._o[-1] == n - self._n[-1]:
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


def _token_script(token: str) -> str:
    """LATIN, another script's name, MIXED, or "" for a token without letters."""
    found = {confusables.script(c) for c in token if c.isalpha()} - {"COMMON"}
    if not found:
        return ""
    return found.pop() if len(found) == 1 else "MIXED"


def _previous_script(window: str) -> str:
    """Script of the last token with letters in ``window`` ("" if none)."""
    for token in reversed(_TOKEN.findall(window)):
        found = _token_script(token)
        if found:
            return found
    return ""


def _unmask(text: str, before: str) -> str:
    """``text`` with the foreign look-alikes of disguised tokens replaced by Latin letters."""
    pieces = []
    done = 0
    for m in _DISGUISE.finditer(text):
        s, e = m.span()
        token = m.group()
        own = _token_script(token)
        if own != "MIXED":
            lead = text[max(0, s - CONTEXT_CHARS) : s]
            if len(lead) < CONTEXT_CHARS:
                lead = before[-(CONTEXT_CHARS - len(lead)) :] + lead
            if _previous_script(lead) != "LATIN":
                continue
        pieces.append(text[done:s])
        pieces.append("".join(_CONTEXT.get(c, c) for c in token))
        done = e
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def is_number(token: str) -> bool:
    """Whether a folded token is a number, whose digits never stand for letters:
    no letters, a hexadecimal group, or two digits first (``45s``, ``100ms``)."""
    if token[:2].isdigit() or all(c in _HEX for c in token):
        return True
    return not any(c.isalpha() for c in token)


def _numbers(folded: str, open_end: bool) -> str:
    """Digits of number tokens replaced by NUMBER_DIGITS (one for one)."""
    end = len(folded)

    def repl(m: re.Match) -> str:
        token = m.group()
        if (open_end and m.end() == end) or not is_number(token):
            return token
        return token.translate(_TO_NUMBER)

    return _NUMBER_TOKEN.sub(repl, folded)


def _sharp_s(folded: str, open_end: bool) -> str:
    end = len(folded)

    def repl(m: re.Match) -> str:
        token = m.group()
        if (open_end and m.end() == end) or token not in SHARP_S_WORDS:
            return token
        return token.replace("ß", _SHARP_S_KEPT)

    return _SHARP_TOKEN.sub(repl, folded)


def _fold(text: str) -> tuple[str, OffsetMap | None]:
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


def normalize(text: str, before: str = "", open_end: bool = False) -> tuple[str, OffsetMap | None]:
    """Fold ``text``; the map is None when offsets are unchanged.

    ``before`` is original text that precedes ``text`` (a stream's emitted
    tail), read only for the previous word's script. With ``open_end`` the
    last token may still grow, so it is read the way that can match most
    (digits as letters, ß as ss).
    """
    if text.isascii():
        folded, omap = text.lower(), None
    else:
        if _DISGUISE.search(text):
            text = _unmask(text, before)
        folded, omap = _fold(text)
        if "ß" in folded:
            folded = _sharp_s(folded, open_end)
    if _DIGIT.search(folded):
        folded = _numbers(folded, open_end)
    return folded, omap
