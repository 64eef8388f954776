"""Benchmarks: the kit's guard against better-profanity, for speed and precision.

    python -m kit.guardrails.bench [--size-kb 30] [--repeat 3]
    python -m kit.guardrails.bench --census [--top 20000] [--lang en --lang de ...]

Speed: builds a deterministic English text with some profanity sprinkled in,
censors it with better-profanity and with ``Guard`` (best of ``--repeat``
runs each), then streams it through ``Guard.stream()`` in 4-character
chunks, as LLM deltas arrive, and reports the cost per ``feed`` and how
many characters the stream held back.

Census (precision on real words): the ``wordfreq`` package's most frequent
words of each language (its bundled word lists, so it runs offline), each
checked alone by the default policy and by better-profanity itself. A word
counts as flagged when the input guard would refuse a prompt holding it (its
category's action is ``block``, the only thing better-profanity does); the
flagged words are printed with their categories, and the words that are
only masked in answers are listed too.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

__all__ = ["CENSUS_LANGUAGES", "census", "make_text", "run", "main"]

#: Languages of the census (wordfreq codes).
CENSUS_LANGUAGES = ("en", "de", "es", "fr", "it", "pt", "nl", "ru", "pl", "tr", "sv")

_WORDS = (
    "the of and to in is was for on that with as by at from it this be are "
    "have not had his her they you we can which their were there one all "
    "would been when will more some what about into only other time new "
    "could these two may first then any like now people over such after "
    "also most made many before must through back years where much your "
    "way well down should because each just those how too little state good "
    "very make world still own see men work long get here between both life "
    "being under never day same another know while last might great old year "
    "off come since against go came right used take three model server "
    "request token stream latency batch memory kernel cache answer question "
    "assessment class document analysis shell hello button therapist grape "
    "pass cocktail Dickens Arsenal Essex cumulative titanic Hancock Scunthorpe"
).split()
_BAD = (
    "shit", "fuck", "bastard", "asshole", "f.u.c.k", "sh!t", "damn", "crap",
    "s h i t", "bullshit", "fuuuck", "dick", "piss", "bitch",
)
_ENDS = (".", ".", ".", "!", "?", ",", ";", ":")


def make_text(size_kb: float = 30, seed: int = 1234, bad_every: int = 60) -> str:
    """Deterministic English-like text of about ``size_kb`` KB, with roughly
    one banned word every ``bad_every`` words."""
    rng = random.Random(seed)
    target = int(size_kb * 1024)
    out: list[str] = []
    size = 0
    while size < target:
        n = rng.randint(6, 18)
        words = [rng.choice(_WORDS) for _ in range(n)]
        for i in range(n):
            if rng.randrange(bad_every) == 0:
                words[i] = rng.choice(_BAD)
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(_ENDS) + " "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[: target - 1].rstrip() + "."


def _best(fn, repeat: int) -> tuple[float, object]:
    best = float("inf")
    result = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(size_kb: float = 30, repeat: int = 3) -> dict:
    """Run the benchmark and return its figures (seconds, microseconds, chars)."""
    from better_profanity import Profanity

    from kit.guardrails import Guard

    text = make_text(size_kb)
    t0 = time.perf_counter()
    guard = Guard()
    build_s = time.perf_counter() - t0
    guard.stream()  # compile the stream's expression outside the timings
    profanity = Profanity()

    bp_s, bp_out = _best(lambda: profanity.censor(text), repeat)
    guard_s, guard_out = _best(lambda: guard.censor(text), repeat)

    def stream_once() -> tuple[str, list[int]]:
        stream = guard.stream()
        pieces = []
        held = []
        for i in range(0, len(text), 4):
            pieces.append(stream.feed(text[i : i + 4]))
            held.append(stream.held)
        pieces.append(stream.close())
        return "".join(pieces), held

    stream_s, (stream_out, held) = _best(stream_once, repeat)
    feeds = len(held)
    return {
        "text_chars": len(text),
        "repeat": repeat,
        "guard_build_s": build_s,
        "better_profanity_s": bp_s,
        "guard_s": guard_s,
        "speedup": bp_s / guard_s if guard_s else float("inf"),
        "better_profanity_matches": bp_out.count("****"),
        "guard_matches": guard_out.count("****"),
        "stream_feeds": feeds,
        "stream_us_per_feed": stream_s / feeds * 1e6 if feeds else 0.0,
        "stream_held_avg": sum(held) / feeds if feeds else 0.0,
        "stream_held_max": max(held, default=0),
        "max_holdback": guard.max_holdback,
        "stream_equals_censor": stream_out == guard_out,
    }


def census(
    languages: tuple[str, ...] = CENSUS_LANGUAGES, top: int = 20_000, better_profanity: bool = True
) -> dict[str, dict]:
    """Check each of the ``top`` most frequent words of each language alone.

    Returns ``{lang: {"words": n, "flagged": {word: category}, "masked":
    {word: category}, "counted": n, "better_profanity": [word, ...] or None}}``:
    "flagged" are the words the default policy blocks, "masked" those it only
    masks in answers, "counted" how many more it only counts. LookupError
    for a language wordfreq has no list for.
    """
    from wordfreq import top_n_list

    from kit.guardrails import default_guard

    guard = default_guard()
    profanity = None
    if better_profanity:
        from better_profanity import Profanity

        profanity = Profanity()
    out = {}
    for lang in languages:
        words = top_n_list(lang, top)
        flagged: dict[str, str] = {}
        masked: dict[str, str] = {}
        counted = 0
        for word in words:
            found = guard.find(word)
            blocking = [m for m in found if m.action == "block"]
            masking = [m for m in found if m.masked]
            if blocking:
                flagged[word] = blocking[0].category
            elif masking:
                masked[word] = masking[0].category
            elif found:
                counted += 1
        bp = [w for w in words if profanity.contains_profanity(w)] if profanity else None
        out[lang] = {
            "words": len(words), "flagged": flagged, "masked": masked, "counted": counted, "better_profanity": bp,
        }
    return out


def _print_census(result: dict[str, dict]) -> None:
    print("census: each word checked alone; flagged = a prompt holding it is refused")
    print(f"{'lang':5} {'words':>6} {'flagged':>8} {'masked':>7} {'counted':>8} {'better_profanity':>17}")
    for lang, r in result.items():
        bp = "-" if r["better_profanity"] is None else len(r["better_profanity"])
        print(f"{lang:5} {r['words']:>6} {len(r['flagged']):>8} {len(r['masked']):>7} {r['counted']:>8} {bp:>17}")
    for lang, r in result.items():
        by_category: dict[str, list[str]] = {}
        for word, category in r["flagged"].items():
            by_category.setdefault(category, []).append(word)
        listed = "; ".join(f"{c}: {', '.join(ws)}" for c, ws in sorted(by_category.items())) or "none"
        print(f"\n[{lang}] guard ({len(r['flagged'])}): {listed}")
        if r["masked"]:
            print(f"[{lang}] masked in answers only ({len(r['masked'])}): {', '.join(r['masked'])}")
        if r["better_profanity"] is not None:
            print(f"[{lang}] better_profanity ({len(r['better_profanity'])}): {', '.join(r['better_profanity'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kit.guardrails.bench",
        description="Time the kit's guard against better-profanity, or run the common-word census.",
    )
    parser.add_argument(
        "--size-kb", type=float, default=30, help="text size in KB (default 30)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per timing, best kept (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--census", action="store_true", help="run the common-word census instead")
    parser.add_argument("--top", type=int, default=20_000, help="census: words per language (default 20000)")
    parser.add_argument("--lang", action="append", help="census: a language code (repeatable; default: 11 languages)")
    parser.add_argument("--no-better-profanity", action="store_true", help="census: skip better-profanity (slow)")
    args = parser.parse_args(argv)
    if args.census:
        if args.top < 1:
            parser.error("--top must be at least 1")
        try:
            result = census(tuple(args.lang or CENSUS_LANGUAGES), args.top, not args.no_better_profanity)
        except LookupError as exc:
            parser.error(f"{exc}: give --lang a language wordfreq lists, e.g. {', '.join(CENSUS_LANGUAGES)}")
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            _print_census(result)
        return 0
    if args.size_kb <= 0 or args.repeat < 1:
        parser.error("--size-kb must be positive and --repeat at least 1")
    r = run(args.size_kb, args.repeat)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"text: {r['text_chars']} chars, best of {r['repeat']} runs")
    bp_ms, guard_ms = r["better_profanity_s"] * 1e3, r["guard_s"] * 1e3
    print(f"better_profanity censor: {bp_ms:10.2f} ms  ({r['better_profanity_matches']} censored)")
    print(f"guard censor:            {guard_ms:10.2f} ms  ({r['guard_matches']} censored)")
    print(f"guard/better_profanity speed-up: {r['speedup']:.0f}x")
    print(f"guard build (word list + compile): {r['guard_build_s'] * 1e3:.0f} ms")
    print(
        f"stream, 4-char feeds: {r['stream_us_per_feed']:.1f} us/feed over "
        f"{r['stream_feeds']} feeds; held back avg {r['stream_held_avg']:.2f} / max "
        f"{r['stream_held_max']} chars (bound {r['max_holdback']}); "
        f"output equals censor(): {r['stream_equals_censor']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
