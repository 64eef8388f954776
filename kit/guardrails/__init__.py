"""Profanity guard for prompts and streamed responses.

Pure Python (standard library + better-profanity's word list), so it runs in
Triton's Python backend as well as in notebooks::

    from kit.guardrails import Guard
    guard = Guard()                      # better-profanity's list + the kit's
    guard.is_profane("what the f.u.c.k")  # True
    guard.censor("oh sh!t")               # 'oh ****'
    stream = guard.stream()               # one per response
    pieces = [stream.feed(delta) for delta in deltas] + [stream.close()]

It catches everything better-profanity catches on the same words, and also
letters separated by spaces, dots, dashes or underscores, symbol stand-ins,
accents, look-alike letters from other scripts, full-width and other
compatibility forms, invisible characters inside a word, stretched letters
and words in quotes or brackets, while leaving words that merely contain a
banned entry (``Scunthorpe``, ``assessment``) alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from kit.exceptions import ConfigError, KitError
from kit.guardrails.matcher import Matcher, compile_words
from kit.guardrails.normalize import normalize, require_str
from kit.guardrails.stream import CENSOR, CensorStream
from kit.guardrails.wordlist import build_words

__all__ = [
    "CENSOR",
    "CensorStream",
    "ConfigError",
    "Guard",
    "KitError",
    "Match",
    "default_guard",
]


@dataclass(frozen=True)
class Match:
    """A banned entry found in a text."""

    start: int  #: offset of the first character in the original text
    end: int  #: offset just past the last character in the original text
    word: str  #: the word-list entry that matched


@functools.lru_cache(maxsize=8)
def _compiled(words: tuple[str, ...]) -> Matcher:
    return compile_words(words)


class Guard:
    """Finds and censors banned words.

    ``words`` replaces the default list (better-profanity's bundled list plus
    the kit's ``banned_words.txt``); ``extra_words`` adds entries and
    ``allow_words`` removes entries, compared without regard to case.
    Entries with several words or separators (``"blow job"``,
    ``"f-u-c-k"``) are supported. Invalid entries raise ConfigError.
    """

    def __init__(
        self,
        extra_words: Iterable[str] | None = None,
        allow_words: Iterable[str] | None = None,
        words: Iterable[str] | None = None,
    ) -> None:
        entries = build_words(words, extra_words, allow_words)
        self._matcher = _compiled(entries)

    @property
    def words(self) -> tuple[str, ...]:
        """The entries this guard looks for (lower case)."""
        return self._matcher.words

    @property
    def max_holdback(self) -> int:
        """Upper bound of characters a stream of this guard may hold back."""
        return self._matcher.max_holdback

    def find(self, text: str) -> list[Match]:
        """Every match in ``text``, left to right, not overlapping."""
        require_str(text)
        norm, omap = normalize(text)
        words = self._matcher.leaf_words
        found = []
        for m in self._matcher.full.finditer(norm):
            a, b = m.span()
            if omap is not None:
                a, b = omap.start(a), omap.end(b)
            found.append(Match(a, b, words[m.lastindex]))
        return found

    def is_profane(self, text: str) -> bool:
        """Whether ``text`` contains a banned entry."""
        require_str(text)
        return self._matcher.full.search(normalize(text)[0]) is not None

    def censor(self, text: str) -> str:
        """``text`` with every match replaced by ``"****"``; the rest is kept as is."""
        pieces = []
        done = 0
        for m in self.find(text):
            pieces.append(text[done : m.start])
            pieces.append(CENSOR)
            done = m.end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def stream(self) -> CensorStream:
        """A new incremental censor for one streamed response."""
        return CensorStream(self)

    def __repr__(self) -> str:
        return f"Guard({len(self.words)} entries)"


_default: Guard | None = None
_default_lock = threading.Lock()


def default_guard() -> Guard:
    """The shared ``Guard()`` of this process (the word list is built once)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Guard()
    return _default
