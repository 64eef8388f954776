"""Unit tests of the profanity guard: word list, evasions, false positives,
exact censoring, configuration and bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.exceptions import ConfigError, KitError
from kit.guardrails import CATEGORIES, Guard, Match, default_guard, wordlist


@pytest.fixture(scope="module")
def guard() -> Guard:
    return default_guard()


# --------------------------------------------------------------------------
# Word list


def test_default_list_is_the_kit_file(guard):
    """The default entries are words.txt's, less the categories the policy lets pass."""
    entries = wordlist.kit_entries()
    looked_for = {e.word for e in entries if e.category not in ("allow", "topic")}
    assert set(guard.words) == looked_for
    assert {"shit", "fuck", "hell", "damn", "kill yourself", "nigger"} <= set(guard.words)
    assert not {"god", "gay", "sex", "hitler", "rum"} & set(guard.words)


def test_word_file_is_well_formed():
    """Every words.txt entry has a known category and flags, with no duplicate in a category."""
    entries = wordlist.kit_entries()
    assert len(entries) > 200
    assert {e.category for e in entries} <= set(CATEGORIES) | {"allow"}
    assert len({(e.word, e.category) for e in entries}) == len(entries)
    assert all(e.word == e.word.strip().lower() for e in entries)
    assert {e.word for e in entries if e.root} >= {"fuck", "shit", "cunt", "nigger"}


def test_bp_list_is_read_from_the_installed_package():
    """better-profanity's list comes from the installed package, not from a copy."""
    import better_profanity

    path = better_profanity.__file__.rsplit("/", 1)[0] + "/profanity_wordlist.txt"
    with open(path, encoding="utf-8") as fh:
        expected = tuple(line.strip() for line in fh if line.strip())
    assert wordlist.better_profanity_words() == expected


def test_better_profanity_policy_is_the_seed_list():
    """The better_profanity policy looks for better-profanity's list plus the seed file, all blocked."""
    g = Guard(policy="better_profanity")
    bp = {w.lower() for w in wordlist.better_profanity_words()}
    seed = {w.lower() for w in wordlist.kit_words()}
    assert set(g.words) == bp | seed
    assert set(g.actions.values()) == {"block"}
    for word in ("god", "kill", "gay", "rum", "kill yourself"):
        assert g.is_profane(word), word
    assert g.find("gay")[0].category == "topic" and g.find("aryan")[0].category == "unsorted"


def test_default_guard_is_shared():
    """default_guard() builds the guard once and returns the same object."""
    assert default_guard() is default_guard()
    assert default_guard().words == Guard().words


def test_import_needs_only_stdlib_and_better_profanity():
    """kit.guardrails imports and works with the heavy packages made unimportable."""
    code = (
        "import sys\n"
        "for name in ('numpy', 'vllm', 'torch', 'tritonclient', 'pandas'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "import kit.guardrails as g\n"
        "s = g.default_guard().stream()\n"
        "print(g.default_guard().censor('oh sh!t'), s.feed('fu') + s.feed('ck.') + s.close())\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == ["oh", "****", "****."]


# --------------------------------------------------------------------------
# Evasions: each text hides one banned word; (text, censored text).

EVASIONS = [
    ("shit", "****"),
    ("SHIT", "****"),
    ("s h i t", "****"),
    ("S  H  I  T", "****"),
    ("f.u.c.k", "****"),
    ("F-U-C-K", "****"),
    ("f_u_c_k", "****"),
    ("f . u . c . k", "****"),
    ("b-i-t-c-h", "****"),
    ("Sh!t", "****"),
    ("sh*t", "****"),
    ("$h!t", "****"),
    ("5h1t", "****"),
    ("sh1t", "****"),
    ("b!tch", "****"),
    ("fück", "****"),
    ("FÜCK", "****"),
    ("fu\u0308ck", "****"),  # u + combining diaeresis
    ("shît", "****"),
    ("bítch", "****"),
    ("ｆｕｃｋ", "****"),  # full-width
    ("ＳＨＩＴ", "****"),
    ("ѕhіt", "****"),  # Cyrillic dze and i
    ("fυck", "****"),  # Greek upsilon
    ("сunt", "****"),  # Cyrillic es
    ("ΒΙΤCΗ", "****"),  # Greek capitals
    ("ⓕⓤⓒⓚ", "****"),  # circled letters
    ("𝐟𝐮𝐜𝐤", "****"),  # mathematical bold
    ("ꜱʜɪᴛ", "****"),  # small capitals
    ("fu\u200bck", "****"),  # zero-width space
    ("fu\u200dck", "****"),  # zero-width joiner
    ("sh\u00adit", "****"),  # soft hyphen
    ("\ufeffshit", "\ufeff****"),  # BOM before the word stays
    ("fu\u00a0ck", "****"),  # no-break space inside the word
    ("f\u00a0u\u00a0c\u00a0k", "****"),
    ("fuuuck", "****"),
    ("fuuuuuuuck", "****"),
    ("shiiiiit", "****"),
    ("biiitch", "****"),
    ('"shit"', '"****"'),
    ("'shit'", "'****'"),
    ("(shit)", "(****)"),
    ("[fuck]", "[****]"),
    ("{fuck}", "{****}"),
    ("«shit»", "«****»"),
    ("“shit”", "“****”"),
    ("**shit**", "******" "**"),
    ("_shit_", "_****_"),
    ("shit's", "****'s"),
    ("shit!!!", "****!!!"),
    ("...shit...", "...****..."),
    ("F\u200bÜ\u200bC\u200bK", "****"),
    ("kill yourself", "****"),
    ("k y s", "****"),
    ("KYS", "****"),
]


@pytest.mark.parametrize("text,expected", EVASIONS, ids=[repr(t) for t, _ in EVASIONS])
def test_evasion_is_caught_and_censored(guard, text, expected):
    """Each evasion is flagged and its whole span, and only it, is censored."""
    assert guard.is_profane(text)
    assert guard.censor(text) == expected
    assert len(guard.find(text)) == 1


@pytest.mark.parametrize("text,expected", EVASIONS[:20], ids=[repr(t) for t, _ in EVASIONS[:20]])
def test_evasion_inside_a_sentence(guard, text, expected):
    """An evasion is caught in the middle of a sentence, next to punctuation."""
    sentence = f"Well, {text}, that was rude."
    assert guard.censor(sentence) == f"Well, {expected}, that was rude."


# --------------------------------------------------------------------------
# False positives: ordinary words and sentences that merely contain a banned
# word, or single letters, stay untouched. Grow this list.

CLEAN_WORDS = [
    "Scunthorpe", "assessment", "cocktail", "Dickens", "shiitake", "Arsenal",
    "therapist", "class", "Hancock", "document", "grape", "pass", "analysis",
    "Essex", "shell", "hello", "cumulative", "titanic", "button", "Sussex",
    "Middlesex", "Wessex", "cockpit", "peacock", "bass", "glass", "assume",
    "massive", "embarrass", "compass", "basement", "Penistone", "Cockburn",
    "Dickinson", "Clitheroe", "skyscraper", "scrapbook", "homogeneous",
    "sextant", "title", "butterfly", "buttress", "shitake", "Matsushita",
    "snigger", "Niger", "Nigeria", "spicy", "good", "goood", "goooood",
    "noob", "xxxx", "potato", "fattening", "Japan", "Japanese", "rummage",
    "hivemind", "passage", "classic", "assassin", "cockatoo", "hitchhiker",
    "manuscript", "grapefruit", "Shakespeare", "Dickensian", "circumstance",
    "cucumber", "scunthorpe", "harassment", "bassoon", "cassette", "pussycat",
    "therapists", "analyst", "shitakes", "wholesale", "pianist", "Saturday",
    "hello-world", "class_name", "document.pdf", "pass-through", "Essex-based",
    "grape's", "Hancock's", "Dickens's", "ASSESSMENT", "CLASS", "sob", "pastille",
    "Hello", "shellfish", "classy", "passion", "dickey", "cocky", "scrap",
]

CLEAN_SENTENCES = [
    "I am a c programmer",
    "a b c",
    "A B C D E F G",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "Plan B, then plan C.",
    "Vitamins A, B, C and D.",
    "See e.g. a list, i.e. the items x, y and z.",
    "The U.S.A. and the U.K. signed.",
    "Go to section a. then b.",
    "Visit https://example.com/a/b/c?x=1&y=2 now.",
    "The **assessment** is in `class_name.py`.",
    "Her score was 100% on the 1st try; price $5.",
    "x = a * b + c",
    "Email me at hello@example.com please.",
    "The therapist read Dickens in Scunthorpe.",
]


@pytest.mark.parametrize("word", CLEAN_WORDS)
def test_ordinary_word_is_not_flagged(guard, word):
    """A word that merely contains a banned word is left alone."""
    for text in (word, f"The {word} is here.", f'"{word}"', f"({word})"):
        assert guard.find(text) == []
        assert guard.censor(text) == text


@pytest.mark.parametrize("sentence", CLEAN_SENTENCES)
def test_ordinary_sentence_is_not_flagged(guard, sentence):
    """Single letters and everyday punctuation do not trigger the spaced-letter rule."""
    assert guard.find(sentence) == []


def test_spaced_letters_must_spell_a_banned_word(guard):
    """Spaced single letters are flagged only where they spell a banned word."""
    assert guard.censor("a b c s h i t d e f") == "a b c **** d e f"
    assert guard.censor("what a s h i t show") == "what a **** show"
    assert not guard.is_profane("s h i p")


# --------------------------------------------------------------------------
# Exact spans


def test_censor_replaces_exactly_the_span(guard):
    """Censoring replaces the matched span only; quotes, punctuation and spacing stay."""
    text = 'He said "s h i t", then (f.u.c.k)!  And  Sh!t...\n'
    assert guard.censor(text) == 'He said "****", then (****)!  And  ****...\n'
    found = guard.find(text)
    assert [text[m.start : m.end] for m in found] == ["s h i t", "f.u.c.k", "Sh!t"]
    assert [m.word for m in found] == ["shit", "fuck", "shit"]


def test_match_offsets_refer_to_the_original_text(guard):
    """Offsets stay right across characters that vanish or expand when folded."""
    cases = [
        ("😀 shit", [(2, 6)]),
        ("Straße fuck", [(7, 11)]),
        ("ﬁne shit", [(4, 8)]),
        ("fu\u200b\u200bck off", [(0, 6)]),
        ("a\u0301 fu\u0308ck", [(3, 8)]),
        ("…shit…", [(1, 5)]),
        ("ｆｕｃｋ ｔｈｅｍ", [(0, 4)]),
        ("s\u0336h\u0336i\u0336t\u0336 ok", [(0, 8)]),
    ]
    for text, spans in cases:
        assert [(m.start, m.end) for m in guard.find(text)] == spans, text


def test_match_is_a_frozen_dataclass(guard):
    """Match is an immutable dataclass with start, end and the canonical entry."""
    m = guard.find("oh FUCK")[0]
    assert (m.start, m.end, m.word, m.category, m.action) == (3, 7, "fuck", "obscenity", "block")
    assert [f.name for f in dataclasses.fields(Match)] == ["start", "end", "word", "category", "action"]
    assert m.masked
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.start = 0


def test_repeated_and_adjacent_matches(guard):
    """Several matches in a row are censored one by one."""
    assert guard.censor("shit shit, fuck.fuck") == "**** ****, ****.****"
    assert len(guard.find("shit " * 50)) == 50


def test_longest_entry_wins(guard):
    """Where a longer entry matches, it is reported instead of its prefix."""
    assert guard.find("motherfucker")[0].word == "motherfucker"
    assert guard.find("a$$hole")[0] == Match(0, 7, "asshole", "obscenity", "block")


def test_symbols_before_a_word_are_kept(guard):
    """Markdown emphasis around a banned word stays outside the censored span."""
    assert guard.censor("**shit**") == "**" + "****" + "**"
    assert guard.censor("*shit*") == "*" + "****" + "*"


_text_st = st.text(
    alphabet=st.sampled_from(list("abcdefhiklnorstu !.,-_*$@1\"'\n") + ["\u200b", "ü", "ѕ"]),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_text_st)
def test_censor_keeps_everything_outside_matches(text):
    """Outside the masked spans, censor leaves the text byte-identical."""
    guard = default_guard()
    found = guard.find(text)
    rebuilt = []
    done = 0
    for m in found:
        assert done <= m.start < m.end <= len(text)
        if m.masked:
            rebuilt += [text[done : m.start], "****"]
            done = m.end
    rebuilt.append(text[done:])
    assert guard.censor(text) == "".join(rebuilt)
    assert guard.is_profane(text) == any(m.action == "block" for m in found)


# --------------------------------------------------------------------------
# Compounds and uneven splits of root words


@pytest.mark.parametrize(
    "text", ["deltashit", "fuckface", "bullshitters", "shitbag", "horseshitty", "dumbfuckery", "motherfuckers",
             "fu ck", "sh it", "cu nt", "bi tch", "piece of sh it", "fu-ck"],
)
def test_compounds_and_uneven_splits_are_caught(guard, text):
    """A root glued into a compound, or split once by a separator, is found and masked as a whole."""
    assert guard.is_profane(text)
    censored = guard.censor(f"oh {text}!")
    assert censored.count("****") == 1 and censored.startswith("oh ") and censored.endswith("****!")


@pytest.mark.parametrize(
    "text",
    ["Scunthorpe", "shitake", "shitakes", "mishits", "sniggering", "Matsushita", "Yamashita",
     "arigatou gozaimashita", "shitsumon", "Wankel engine", "who re-elected him", "the bit changed",
     "as shown above", "Sh, it is fine", "push it", "wash it", "a fun cake", "pi ss", "s hit"],
)
def test_allowed_words_and_ordinary_word_pairs_pass(guard, text):
    """Scunthorpe-type words shielded by the allow list and ordinary word pairs are not flagged."""
    assert guard.find(text) == []


def test_compounds_are_bounded():
    """A root glued to more than MAX_AFFIX letters is not a compound (and keeps hold-back bounded)."""
    from kit.guardrails.matcher import MAX_AFFIX

    assert default_guard().is_profane("x" * MAX_AFFIX + "shit")
    assert not default_guard().is_profane("x" * (MAX_AFFIX + 1) + "shit")


# --------------------------------------------------------------------------
# Multi-word entries, extra and allowed words


def test_multi_word_entries(guard):
    """Multi-word entries match with any short run of separators, or none."""
    for text in ("blow job", "blow  job", "blow-job", "BLOW_JOB", "blow . job"):
        assert guard.find(text) == [Match(0, len(text), "blow job", "sexual", "mask")], text
    assert guard.censor("a blow\u00a0job") == "a ****"
    for text in ("kill yourself", "Kill   yourself", "kill-yourself", "killyourself"):
        assert guard.find(text) == [Match(0, len(text), "kill yourself", "harm", "block")], text
    assert guard.censor("just kill yourself now") == "just **** now"
    assert guard.censor("2 girls 1 cup") == "****"
    assert guard.find("son of a bitch")[0].word == "son of a bitch"
    assert not guard.find("blow the job away")


def test_extra_words():
    """extra_words adds entries, with the same evasion handling."""
    g = Guard(extra_words=["frak", "smeg head"])
    for text in ("frak", "FRAK!", "f r a k", "fr@k", "fräk", "fraaak", "smeg head", "smeghead"):
        assert g.is_profane(text), text
    assert not g.is_profane("fraktur")
    assert not Guard().is_profane("frak")


def test_allow_words():
    """allow_words removes entries from the list, whatever their case."""
    g = Guard(allow_words=["crap", "hell", "not-in-the-list"])
    assert not g.is_profane("oh crap, what the hell")
    assert g.is_profane("shit")
    assert "crap" not in g.words and "hell" not in g.words
    assert default_guard().is_profane("oh crap")
    assert Guard(allow_words=["deltashit"]).find("deltashit") == []  # shields a compound too


def test_words_replace_the_default_list():
    """words=[...] replaces the default list entirely; extras still add to it."""
    g = Guard(words=["frak"], extra_words=["gorram"])
    assert g.words == ("frak", "gorram")
    assert g.find("frak")[0].category == "custom"
    assert g.censor("frak this gorram shit") == "**** this **** shit"


def test_empty_word_list_matches_nothing():
    """A guard with no entries flags nothing and holds nothing back."""
    g = Guard(words=[])
    assert g.find("shit") == [] and g.max_holdback == 0
    s = g.stream()
    assert s.feed("shit") == "shit" and s.close() == ""


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"extra_words": [""]}, "extra_words[0] is empty"),
        ({"extra_words": ["ok", "   "]}, "extra_words[1] is empty"),
        ({"extra_words": [None]}, "extra_words[0] is NoneType"),
        ({"extra_words": ["ok", 5]}, "extra_words[1] is int"),
        ({"extra_words": [b"frak"]}, "decode bytes"),
        ({"extra_words": "frak"}, "wrap it as ['frak']"),
        ({"allow_words": [3.5]}, "allow_words[0] is float"),
        ({"words": ["ok", ""]}, "words[1] is empty"),
        ({"words": 42}, "must be a list of strings"),
        ({"extra_words": ["!!!"]}, "has no letter or digit"),
        ({"extra_words": ["x" * 100]}, "the limit is 64"),
    ],
)
def test_invalid_entries_raise_config_error(kwargs, fragment):
    """Invalid word-list entries raise ConfigError saying what to fix."""
    with pytest.raises(ConfigError, match=None) as info:
        Guard(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, (KitError, ValueError))


# --------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("value", [None, b"shit", bytearray(b"x"), 42, 3.0, ["shit"]])
def test_non_str_input_raises_type_error(guard, value):
    """Non-str input raises TypeError naming the type; bytes are told to decode first."""
    for call in (guard.find, guard.censor, guard.is_profane, guard.stream().feed):
        with pytest.raises(TypeError) as info:
            call(value)
        assert type(value).__name__ in str(info.value)
        if isinstance(value, (bytes, bytearray)):
            assert "decode it as UTF-8" in str(info.value)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("\ud800", "\ud800"),
        ("shit\ud800", "****\ud800"),
        ("\udfffshit \ud83d", "\udfff**** \ud83d"),
        ("fu\ud800ck", "fu\ud800ck"),
    ],
)
def test_lone_surrogates_do_not_crash(guard, text, expected):
    """Lone surrogates are treated as punctuation: a correct answer, no crash."""
    assert guard.censor(text) == expected
    s = guard.stream()
    assert s.feed(text) + s.close() == expected


def test_empty_and_whitespace_text(guard):
    """Empty or blank text is returned unchanged."""
    for text in ("", " ", "\n\t", "\u200b"):
        assert guard.find(text) == [] and guard.censor(text) == text


PATHOLOGICAL = [
    ("s " * 100_000, 0),
    ("a." * 100_000, 0),
    ("f" * 1_000_000, 0),
    ("*" * 1_000_000, 0),
    ("a*" * 300_000, 0),
    ("1l" * 300_000, 0),
    ("$" * 300_000, 0),
    ("s h i " * 50_000, 0),
    ("\u200b" * 300_000, 0),
    ("f\u200b" * 200_000, 0),
    ("f" + "u" * 500_000 + "ck", 0),
    ("a s s " * 50_000, 50_000),
    ("shit " * 100_000, 100_000),
]


@pytest.mark.parametrize("text,count", PATHOLOGICAL, ids=[repr(t[:8]) for t, _ in PATHOLOGICAL])
def test_pathological_input_finishes(guard, text, count):
    """Adversarial repetitive input gives the right answer without running away."""
    t0 = time.perf_counter()
    assert len(guard.find(text)) == count
    assert time.perf_counter() - t0 < 30  # only a guard against a hang


def test_ten_megabytes(guard):
    """A 10 MB text is processed correctly in one pass."""
    unit = "Hello there, this is a perfectly normal sentence about shit. "
    text = unit * (10_000_000 // len(unit) + 1)
    found = guard.find(text)
    assert len(found) == text.count("shit")
    assert text[found[-1].start : found[-1].end] == "shit"


# --------------------------------------------------------------------------
# Benchmark entry points


def test_bench_run_and_cli(capsys):
    """The benchmark's run() returns consistent figures and its CLI prints the speed-up."""
    from kit.guardrails import bench

    text = bench.make_text(2)
    assert text == bench.make_text(2) and 1900 < len(text) <= 2048
    r = bench.run(size_kb=1, repeat=1)
    assert r["stream_equals_censor"] is True
    assert r["guard_matches"] > 0 and r["better_profanity_matches"] > 0
    assert r["speedup"] == pytest.approx(r["better_profanity_s"] / r["guard_s"])
    assert 0 <= r["stream_held_avg"] <= r["stream_held_max"] <= r["max_holdback"]
    assert bench.main(["--size-kb", "0.5", "--repeat", "1"]) == 0
    assert "guard/better_profanity speed-up:" in capsys.readouterr().out


def test_census_meets_its_goals(capsys):
    """On wordfreq's 5,000 most frequent words per language the default policy refuses at most 10
    outside English, and in English only words of blocking categories."""
    from kit.guardrails import bench

    result = bench.census(top=5000, better_profanity=False)
    assert set(result) == set(bench.CENSUS_LANGUAGES)
    for lang, r in result.items():
        assert r["words"] == 5000
        if lang != "en":
            assert len(r["flagged"]) <= 10, (lang, r["flagged"])
    blocking = {c for c, a in default_guard().actions.items() if a == "block"}
    assert set(result["en"]["flagged"].values()) <= blocking
    assert {"shit", "fuck", "hell", "damn"} <= set(result["en"]["flagged"])
    assert not {"god", "kill", "gay", "sexual", "murder", "fat", "hitler"} & set(result["en"]["flagged"])
    assert bench.main(["--census", "--top", "200", "--lang", "de", "--lang", "sv"]) == 0
    out = capsys.readouterr().out
    assert "census: each word checked alone" in out and "[sv] better_profanity (" in out
    with pytest.raises(SystemExit):
        bench.main(["--census", "--lang", "xx"])
    assert "give --lang a language wordfreq lists" in capsys.readouterr().err

