"""Word guard for prompts and streamed responses, with categories and policies.

Pure Python (standard library + the word lists), so it runs in Triton's
Python backend as well as in notebooks::

    from kit.guardrails import Guard
    guard = Guard()                        # the default policy
    guard.is_profane("what the f.u.c.k")   # True: an obscenity, which the default policy blocks
    guard.is_profane("kill a zombie process")  # False: a topic word, which passes
    guard.censor("oh sh!t")                # 'oh ****'
    [m.category for m in guard.find("you idiot")]  # ['insult'] (counted, not masked)
    stream = guard.stream()                # one per response
    pieces = [stream.feed(delta) for delta in deltas] + [stream.close()]
    Guard(policy="better_profanity")       # the original showcase's list, all blocked

Every entry has a category (:mod:`kit.guardrails.policy`); the policy says
per category whether the input guard blocks it, the output censor masks it,
or it is only counted. The matcher catches letters separated by spaces, dots,
dashes or underscores, uneven splits of root words (``fu ck``), compounds
(``deltashit``), symbol and digit stand-ins (``5h1t``, never inside a number),
accents, look-alike letters from other scripts where they disguise a word
(UTS #39), full-width and other compatibility forms, invisible characters
inside a word, stretched letters and words in quotes or brackets, while
leaving words that merely contain an entry (``Scunthorpe``, ``assessment``)
alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kit.exceptions import ConfigError, KitError
from kit.guardrails.matcher import Matcher, compile_words
from kit.guardrails.normalize import extend_marks, normalize, require_str
from kit.guardrails.policy import ACTIONS, CATEGORIES, MASKING, POLICIES, resolve_actions
from kit.guardrails.stream import CENSOR, CensorStream
from kit.guardrails.wordlist import ALLOW, Entry, build_entries

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "CENSOR",
    "CensorStream",
    "ConfigError",
    "Guard",
    "KitError",
    "Match",
    "POLICIES",
    "default_guard",
]


@dataclass(frozen=True)
class Match:
    """An entry found in a text."""

    start: int  #: offset of the first character in the original text
    end: int  #: offset just past the last character (and its combining marks)
    word: str  #: the word-list entry that matched
    category: str  #: the entry's category (kit.guardrails.policy.CATEGORIES)
    action: str  #: what the guard's policy does with it: block, mask or count

    @property
    def masked(self) -> bool:
        """Whether the output censor replaces this match with ``****``."""
        return self.action in MASKING


@functools.lru_cache(maxsize=8)
def _compiled(entries: tuple[Entry, ...]) -> Matcher:
    return compile_words(entries)


def _is_name(text: str) -> bool:
    """A Title-case spelling ("Dick"): a capital letter followed by lower-case ones."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) > 1 and letters[0].isupper() and all(c.islower() for c in letters[1:])


class Guard:
    """Finds entries of a policy's word list; censors and counts them.

    ``policy`` names the word list and the action of each category
    (``"default"`` or ``"better_profanity"``); ``actions`` overrides the
    action of single categories (``{"insult": "mask"}``). ``words``
    replaces the list (category ``custom``); ``extra_words`` adds entries
    (category ``custom``); ``allow_words`` removes entries and shields those
    words everywhere, compared without regard to case. Entries with several
    words or separators (``"blow job"``, ``"f-u-c-k"``) are supported.
    Invalid settings raise ConfigError naming the fix.
    """

    def __init__(
        self,
        extra_words: Iterable[str] | None = None,
        allow_words: Iterable[str] | None = None,
        words: Iterable[str] | None = None,
        policy: str = "default",
        actions: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        #: Action of every category under this guard's policy.
        self.actions = resolve_actions(policy, actions)
        entries = build_entries(policy, words, extra_words, allow_words)
        entries = tuple(e for e in entries if e.category == ALLOW or self.actions[e.category] != "allow")
        self._matcher = _compiled(entries)

    @property
    def words(self) -> tuple[str, ...]:
        """The entries this guard looks for (lower case; allow entries excluded)."""
        return tuple(dict.fromkeys(e.word for e in self._matcher.entries if e.category != ALLOW))

    @property
    def categories(self) -> tuple[str, ...]:
        """Categories this guard looks for (those whose action is not ``allow``)."""
        return tuple(c for c in CATEGORIES if self.actions[c] != "allow")

    @property
    def max_holdback(self) -> int:
        """Upper bound of characters a stream of this guard may hold back."""
        return self._matcher.max_holdback

    def _match(self, m, text: str, a: int, b: int) -> Match | None:
        """The Match for a regex match spanning text[a:b], or None if it is shielded."""
        entry = self._matcher.leaves[m.lastindex]
        if entry is None or entry.category == ALLOW or (entry.name and _is_name(text[a:b])):
            return None
        return Match(a, extend_marks(text, b), entry.word, entry.category, self.actions[entry.category])

    def find(self, text: str) -> list[Match]:
        """Every match in ``text`` (blocked, masked or counted), left to right, not overlapping."""
        require_str(text)
        norm, omap = normalize(text)
        found = []
        for m in self._matcher.full.finditer(norm):
            a, b = m.span()
            if omap is not None:
                a, b = omap.start(a), omap.end(b)
            match = self._match(m, text, a, b)
            if match is not None:
                found.append(match)
        return found

    def is_profane(self, text: str) -> bool:
        """Whether ``text`` contains an entry whose action is ``block`` (the input guard)."""
        return any(m.action == "block" for m in self.find(text))

    def censor(self, text: str) -> str:
        """``text`` with every masked match replaced by ``"****"``; the rest is kept as is."""
        pieces = []
        done = 0
        for m in self.find(text):
            if m.masked:
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
        return f"Guard(policy={self.policy!r}, {len(self.words)} entries)"


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
