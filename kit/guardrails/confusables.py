"""Look-alike letters from the Unicode standard (UTS #39 confusables).

``lookalikes.txt`` next to this module lists every character that Unicode's
``confusables.txt`` (Unicode Technical Standard #39, Security Mechanisms)
declares confusable with a single Latin letter, with the letter and the
character's script (from Unicode's ``Scripts.txt``). It is generated from the
data shipped by the ``confusable-homoglyphs`` package (MIT licence; its data
files are Unicode's, under the Unicode License v3, which permits
redistribution with the notice kept in the file header)::

    python -m kit.guardrails.confusables   # rewrites lookalikes.txt

At run time only the shipped file is read (standard library only). Letters of
the Latin and Common scripts fold wherever they appear; letters of other
scripts fold only where they disguise a Latin word (see
:mod:`kit.guardrails.normalize`).
"""

from __future__ import annotations

import functools
import os
import sys
import unicodedata

__all__ = ["DATA_FILE", "HEADER", "load", "rows_from_unicode_data", "script", "write"]

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lookalikes.txt")
HEADER = """\
# Characters confusable with one Latin letter: code point, letter, script, name.
# Derived from Unicode's confusables.txt (UTS #39) and Scripts.txt, as shipped by the
# confusable-homoglyphs 3.3.1 package; regenerate with `python -m kit.guardrails.confusables`.
# Unicode data: Copyright (c) 1991-2024 Unicode, Inc. Distributed under the Unicode License v3
# (https://www.unicode.org/license.txt), which permits copying and redistribution with this notice.
"""
#: Scripts whose look-alikes fold wherever they appear.
EVERYWHERE = frozenset({"LATIN", "COMMON", "INHERITED"})


def rows_from_unicode_data() -> list[tuple[str, str, str]]:
    """(character, Latin letter, script) for every single-letter confusable.

    Needs the ``confusable-homoglyphs`` package (a development tool here).
    """
    import json

    from confusable_homoglyphs import categories

    folder = os.path.dirname(categories.__file__)
    with open(os.path.join(folder, "confusables.json"), encoding="utf-8") as fh:
        table = json.load(fh)
    found: dict[str, set[str]] = {}
    for key, glyphs in table.items():
        for glyph in glyphs:
            other = glyph["c"]
            if len(key) != 1 or len(other) != 1:
                continue
            for ch, letter in ((other, key), (key, other)):
                if letter.isascii() and letter.isalpha() and not ch.isascii():
                    found.setdefault(ch, set()).add(letter.lower())
    return sorted(
        (ch, min(letters), categories.alias(ch)) for ch, letters in found.items() if len(letters) == 1
    )


def write(path: str = DATA_FILE) -> int:
    """Write the data file; returns the number of characters listed."""
    rows = rows_from_unicode_data()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        for ch, letter, scr in rows:
            fh.write(f"{ord(ch):04X}\t{letter}\t{scr}\t{unicodedata.name(ch, '?')}\n")
    return len(rows)


@functools.lru_cache(maxsize=1)
def load() -> dict[str, tuple[str, str]]:
    """character -> (Latin letter, script) from the shipped data file."""
    out = {}
    with open(DATA_FILE, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            code, letter, scr, _ = line.rstrip("\n").split("\t", 3)
            out[chr(int(code, 16))] = (letter, scr)
    return out


@functools.lru_cache(maxsize=4096)
def script(ch: str) -> str:
    """The script of a letter, from its Unicode name: LATIN, CYRILLIC, GREEK, ...

    Non-letters are COMMON. Compatibility forms of Latin letters (full-width,
    mathematical, circled) count as LATIN, since they fold to Latin letters.
    """
    if ch.isascii():
        return "LATIN" if ch.isalpha() else "COMMON"
    if not ch.isalpha():
        return "COMMON"
    known = load().get(ch)
    if known is not None and known[1] not in EVERYWHERE:
        return known[1]
    name = unicodedata.name(ch, "")
    if "LATIN" in name or name.startswith("MATHEMATICAL") or not name:
        return "LATIN"
    return name.split(" ", 1)[0]


if __name__ == "__main__":
    print(f"{write()} characters written to {DATA_FILE}", file=sys.stderr)
