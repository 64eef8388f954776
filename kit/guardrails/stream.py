"""Censoring a response that arrives in pieces (LLM token deltas).

A stream keeps the not-yet-emitted tail of the text. On every ``feed`` it
folds only that tail, finds the first position where a banned entry could
still begin and be completed (or extended) by text to come, emits everything
before it, censored, and keeps the rest. Matches are found with the same
expression as ``Guard.censor`` and scanning resumes exactly where the
one-shot scan would be, so for any chunking the emitted pieces join up to
``guard.censor(text)``, and nothing is emitted that a later chunk could turn
into (part of) a match. Matches whose action is ``count`` pass unchanged
and are counted per category (``CensorStream.counts``). The stream also keeps
the last :data:`~kit.guardrails.normalize.CONTEXT_CHARS` characters it
emitted, which the folding of the next word may depend on (its script).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kit.exceptions import KitError
from kit.guardrails.normalize import CONTEXT_CHARS, normalize, require_str

if TYPE_CHECKING:  # pragma: no cover
    from kit.guardrails import Guard

__all__ = ["CensorStream"]

CENSOR = "****"


class CensorStream:
    """Incremental censor for one response; create it with ``Guard.stream()``."""

    __slots__ = ("_guard", "_full", "_prefix", "_buf", "_ctx", "_tail", "_closed", "censored", "counts")

    def __init__(self, guard: Guard) -> None:
        matcher = guard._matcher
        self._guard = guard
        self._full = matcher.full
        self._prefix = matcher.prefix
        self._buf = ""  # original text not emitted yet
        self._ctx = ""  # last folded character emitted (for word boundaries)
        self._tail = ""  # last original characters emitted (for the next word's script)
        self._closed = False
        #: Number of matches masked so far in this stream.
        self.censored = 0
        #: Matches so far per category (masked and counted ones).
        self.counts: dict[str, int] = {}

    @property
    def held(self) -> int:
        """Characters received but not emitted yet."""
        return len(self._buf)

    def feed(self, chunk: str) -> str:
        """Add ``chunk``; return the text that is safe to emit now (maybe "")."""
        require_str(chunk, "chunk")
        if self._closed:
            raise KitError(
                "this stream is closed: call guard.stream() for a new response."
            )
        if not chunk:
            return ""
        self._buf += chunk
        return self._drain(final=False)

    def close(self) -> str:
        """End the response: return everything still held, censored."""
        if self._closed:
            return ""
        out = self._drain(final=True)
        self._closed = True
        return out

    def _drain(self, final: bool) -> str:
        buf = self._buf
        norm, omap = normalize(buf, self._tail, open_end=not final)
        ctx = self._ctx
        s = ctx + norm
        base = len(ctx)
        end = len(s)

        def alive(pos: int) -> int:
            if final:
                return end
            m = self._prefix.search(s, pos)
            return m.start() if m else end

        u = alive(base)
        out = []
        done = 0  # original offset emitted so far
        # A match starting at or after u is held; when everything is held, do not scan.
        for m in self._full.finditer(s, base) if u > base else ():
            a, b = m.span()
            if a >= u:
                break
            a -= base
            b -= base
            if omap is not None:
                a, b = omap.start(a), omap.end(b)
            match = self._guard._match(m, buf, a, b)
            if match is not None:
                self.counts[match.category] = self.counts.get(match.category, 0) + 1
                if match.masked:
                    out.append(buf[done:a])
                    out.append(CENSOR)
                    done = match.end
                    self.censored += 1
            if m.end() > u:
                u = alive(m.end())
        # Cut point in the original text.
        if final:
            cut = len(buf)
        elif u < end:
            cut = u - base if omap is None else omap.start(u - base)
        elif norm:
            # Nothing can start any more; keep trailing invisible characters,
            # which belong with whatever comes next.
            cut = len(norm) if omap is None else omap.end(len(norm))
        else:
            cut = 0
        cut = max(cut, done)
        out.append(buf[done:cut])
        self._buf = buf[cut:]
        if cut:
            self._tail = (self._tail + buf[:cut])[-CONTEXT_CHARS:]
        if u > base:
            self._ctx = s[u - 1]
        return "".join(out)
