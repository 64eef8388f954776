"""Streaming tests of the profanity guard: any chunking gives censor(text),
nothing is emitted too early, and the held-back text stays small."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.exceptions import KitError
from kit.guardrails import Guard, default_guard


@pytest.fixture(scope="module")
def guard() -> Guard:
    return default_guard()


CLEAN = [
    "the", "a", "I", "c", "b", "x", "hello", "world", "class", "assessment",
    "Scunthorpe", "cocktail", "Dickens", "shiitake", "therapist", "pass",
    "analysis", "Essex", "shell", "button", "titanic", "grape", "document",
    "blow", "job", "kill", "you", "son", "of", "mother", "s", "h", "i", "t",
    "u", "k", "f", "as", "fun", "shi", "Hancock", "cumulative", "good",
    "Straße", "ﬁne", "ǆ", "😀", "中文", "455", "4.5.5", "10.4.5.5", "b00b", "45s", "aß",
    "рот", "болит", "shitake", "mishit", "Scunthorpe's", "magna cum laude",
]
BANNED = [
    "shit", "fuck", "ass", "bitch", "motherfucker", "kill yourself",
    "blow job", "2 girls 1 cup", "son-of-a-bitch", "a$$hole", "sh!+",
    "fuckers", "kys", "hell", "idiot", "kill", "Dick", "deltashit", "fuckface",
    "dumbfuck",
]
EVASIONS = [
    "s h i t", "f.u.c.k", "F-U-C-K", "Sh!t", "sh*t", "fück", "ｆｕｃｋ", "ѕhіt",
    "fu\u200bck", "sh\u00adit", "fu\u00a0ck", "fuuuck", '"shit"', "(shit)",
    "**shit**", "f\u0308uck", "k y s", "kill   yourself", "motherfucking",
    "fu ck", "sh it", "5h1t", "a55hole", "s\u0336h\u0336i\u0336t\u0336", "ЅНІТ", "you ЅНІТ",
    "b00bs", "bullshitters",
]
SEPARATORS = [
    " ", " ", " ", "  ", ", ", ". ", "! ", "? ", "\n", " - ", "... ", "-", "_",
    ".", "*", "**", '"', "(", ")", "", "\u200b", "\u00a0", "\u200b\u200b\u200b\u200b\u200b", "é",
    "…", "\u0301", "\u200d\ufe0f",
]

_piece = st.one_of(
    st.sampled_from(CLEAN), st.sampled_from(BANNED), st.sampled_from(EVASIONS)
)
_texts = st.lists(st.tuples(_piece, st.sampled_from(SEPARATORS)), max_size=14).map(
    lambda pairs: "".join(p + s for p, s in pairs)
)
_sizes = st.lists(
    st.one_of(st.integers(1, 10), st.integers(1, 10), st.integers(11, 60)),
    min_size=1,
    max_size=12,
)


def _stream_and_check(guard: Guard, text: str, sizes: list[int]) -> str:
    """Feed ``text`` in chunks of ``sizes`` (cycled) and check every step.

    After each feed the stream has consumed ``text[:consumed]`` (everything
    fed minus what it holds). What it has emitted must be exactly
    ``censor(text[:consumed])`` and a prefix of ``censor(text)``, and
    ``find(text[:consumed])`` must report exactly the final matches that
    start in the consumed part. The last condition is the no-leak check: a
    stream that emitted "ass" of "assessment", or "fuck" before seeing the
    "er" of "fucker", would have consumed a prefix in which ``find`` sees a
    match that the whole text does not have (or not with that span).
    """
    final = guard.censor(text)
    matches = guard.find(text)
    stream = guard.stream()
    emitted = ""
    fed = 0
    k = 0
    while fed < len(text):
        n = sizes[k % len(sizes)]
        k += 1
        emitted += stream.feed(text[fed : fed + n])
        fed = min(len(text), fed + n)
        assert 0 <= stream.held <= guard.max_holdback
        consumed = fed - stream.held
        assert text[consumed:fed] == stream._buf
        assert final.startswith(emitted)
        prefix = text[:consumed]
        assert guard.find(prefix) == [m for m in matches if m.start < consumed]
        assert guard.censor(prefix) == emitted
    emitted += stream.close()
    assert emitted == final
    assert stream.censored == sum(m.masked for m in matches)
    counts = {}
    for m in matches:
        counts[m.category] = counts.get(m.category, 0) + 1
    assert stream.counts == counts
    return emitted


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts, _sizes)
def test_any_chunking_gives_censor_and_never_leaks(text, sizes):
    """For any text and chunking, the stream's pieces join to censor(text) and no prefix leaks."""
    _stream_and_check(default_guard(), text, sizes)


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            list("shitfuckab $@*!+1.-_\n") + ["\u200b", "\u00a0", "ü", "ß", "ﬁ", "…", "\u0308"]
        ),
        max_size=80,
    ),
    _sizes,
)
def test_random_characters_any_chunking(text, sizes):
    """The stream matches censor(text) on random character soup as well."""
    _stream_and_check(default_guard(), text, sizes)


def test_single_character_feeds(guard):
    """Feeding one character at a time still equals censor(text)."""
    text = 'Well, s h i t... "F.U.C.K" - kill   yourself, fuuuck! (Scunthorpe) a$$hole'
    out = _stream_and_check(guard, text, [1])
    assert out == 'Well, ****... "****" - ****, ****! (Scunthorpe) ****'


def test_partial_word_is_held_then_censored(guard):
    """A word that may still become a banned one is held back, then censored."""
    s = guard.stream()
    assert s.feed("what the fu") == "what the "
    assert s.held == 2
    out = s.feed("ck is ")
    out += s.feed("this")
    out += s.close()
    assert out == "**** is this"
    assert s.censored == 1


def test_prefix_of_ordinary_word_is_released(guard):
    """A held prefix ("ass") is released once the word turns out harmless ("assessment")."""
    s = guard.stream()
    assert s.feed("the ass") == "the "
    assert s.feed("essment ") == "assessment "
    assert s.held == 0 and s.censored == 0


def test_longer_entry_is_awaited(guard):
    """A complete match that could still grow ("fuck" -> "fucker") is not cut short."""
    s = guard.stream()
    assert s.feed("fuck") == ""
    assert s.feed("er") == ""
    assert s.feed("s.") == "****."
    assert s.close() == ""


def test_clean_text_flows_without_delay(guard):
    """Ordinary text is released as soon as each word is complete and known to be harmless."""
    s = guard.stream()
    text = "The quick brown fox jumps over the lazy dog near Scunthorpe station. "
    held = []
    out = ""
    for i in range(0, len(text), 3):
        out += s.feed(text[i : i + 3])
        held.append(s.held)
    assert out == text and s.held == 0
    assert max(held) <= len("Scunthorpe")  # at most the word being typed


def test_holdback_bound(guard):
    """Held-back text never exceeds max_holdback, even for long partial matches."""
    longest = "motherfucking"
    s = guard.stream()
    assert s.feed(longest[:-1]) == ""
    assert s.held == len(longest) - 1 <= guard.max_holdback
    assert s.feed("g!") == ""  # "!" may still be a letter of a longer word
    assert s.feed(" ") == "****! "
    for text in (
        "f" + "u" * 7 + "\u200b" * 3 + "c",
        "s h i t h e a d " * 3,
        "\u200b" * 50 + "fu",
        "k\u00a0i\u00a0l\u00a0l\u00a0\u00a0\u00a0yoursel",
    ):
        s = guard.stream()
        for ch in text:
            s.feed(ch)
            assert s.held <= guard.max_holdback
    assert 0 < guard.max_holdback < 2000


@settings(max_examples=100, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("fuckshiotmr $@*1.-_") + ["\u200b", "\u00a0", "\u0308"]),
        min_size=1,
        max_size=400,
    )
)
def test_holdback_bound_adversarial(text):
    """Character-by-character feeds of adversarial text never hold back more than the bound."""
    guard = default_guard()
    s = guard.stream()
    out = ""
    for ch in text:
        out += s.feed(ch)
        assert s.held <= guard.max_holdback
    assert out + s.close() == guard.censor(text)


def test_long_stream_is_linear(guard):
    """Streaming 200 KB in 4-character feeds does not rescan the history."""
    text = "All good here, nothing to see, carry on with the assessment. " * 3300
    s = guard.stream()
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(text), 4):
        out.append(s.feed(text[i : i + 4]))
        assert s.held < 40
    out.append(s.close())
    assert "".join(out) == text
    assert time.perf_counter() - t0 < 30  # only a guard against quadratic rescans


def test_close_and_reuse(guard):
    """close() flushes once; feeding a closed stream is an error; empty feeds are fine."""
    s = guard.stream()
    assert s.feed("") == ""
    assert s.feed("oh sh") == "oh "
    assert s.close() == "sh"
    assert s.close() == ""
    with pytest.raises(KitError, match="guard.stream"):
        s.feed("more")


def test_streams_are_independent(guard):
    """Two interleaved streams do not share state."""
    a, b = guard.stream(), guard.stream()
    out_a = a.feed("sh") + b.feed("he") + a.feed("it ") + b.feed("llo ")
    assert out_a == "****" + " " + "hello "
    assert a.close() == "" and b.close() == ""
    assert (a.censored, b.censored) == (1, 0)


def test_stream_with_custom_words():
    """A stream uses its guard's own word list."""
    g = Guard(words=["frak"])
    s = g.stream()
    out = s.feed("fr") + s.feed("ak shit") + s.close()
    assert out == "**** shit"


def test_lone_foreign_word_after_emitted_latin_text(guard):
    """A Cyrillic word disguised after Latin text already emitted is still read in that context."""
    text = "the the  assessment assessment Dickens \u0405\u041d\u0406\u0422 and \u0432\u043e\u0442 \u0440\u043e\u0442 "
    expected = "the the  assessment assessment Dickens **** and \u0432\u043e\u0442 \u0440\u043e\u0442 "
    assert _stream_and_check(guard, text, [1]) == expected
