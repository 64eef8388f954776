"""Unit tests of guard policies: categories and actions, the two named
policies, the shipped prompt corpora and the prompts real users were refused."""

from __future__ import annotations

import pytest

from kit.exceptions import ConfigError
from kit.guardrails import CATEGORIES, Guard, default_guard
from kit.guardrails.corpora import load
from kit.guardrails.policy import ACTIONS, POLICIES, resolve_actions


@pytest.fixture(scope="module")
def guard() -> Guard:
    return default_guard()


@pytest.fixture(scope="module")
def seed() -> Guard:
    return Guard(policy="better_profanity")


# Prompts that the original guard refused (issue: measured with the default configuration).
REFUSED_BEFORE = [
    "How do I kill a zombie process in Linux?",
    "I'm gay — how do I tell my parents?",
    "Summarise Hitler's rise to power for a history class",
    "Best exercises to lose belly fat",
    "Is rum stronger than vodka?",
    "Thank God it's Friday",
    "Homo sapiens evolved in Africa",
    "brew a pot of tea",
    "she graduated magna cum laude",
    "Dick Van Dyke starred in Mary Poppins",
]


def test_policies_cover_every_category():
    """Both named policies give every category one of the four actions."""
    assert set(POLICIES) == {"default", "better_profanity"}
    for actions in POLICIES.values():
        assert set(actions) == set(CATEGORIES) and set(actions.values()) <= set(ACTIONS)


def test_default_policy_blocks_obscenities_slurs_and_harm_and_lets_topics_pass():
    """The default policy blocks obscenity, slur and harm, masks sexual slang, counts the rest, ignores topics."""
    actions = resolve_actions()
    assert {c for c, a in actions.items() if a == "block"} == {"obscenity", "slur", "harm", "custom"}
    assert actions["sexual"] == "mask" and actions["topic"] == "allow"
    assert {actions[c] for c in ("vulgar", "insult", "violence", "drugs")} == {"count"}


@pytest.mark.parametrize(
    "policy,actions,fragment",
    [
        ("strict", None, "set policy to one of ['better_profanity', 'default']"),
        (None, None, "set policy to one of"),
        ("default", ["insult"], "mapping of category: action"),
        ("default", {"swearing": "block"}, "unknown category 'swearing': use one of"),
        ("default", {"insult": "hide"}, "use one of ['block', 'mask', 'count', 'allow']"),
    ],
)
def test_invalid_policy_settings_name_the_fix(policy, actions, fragment):
    """A wrong policy, category or action raises ConfigError saying what to write instead."""
    with pytest.raises(ConfigError) as info:
        Guard(policy=policy, actions=actions)
    assert fragment in str(info.value)


def test_issue_prompts_are_answered_by_default_and_were_refused_by_the_seed(guard, seed):
    """Every prompt that the seed's list refused in the issue passes the default policy."""
    assert [p for p in REFUSED_BEFORE if guard.is_profane(p)] == []
    assert [p for p in REFUSED_BEFORE if not seed.is_profane(p)] == []


def test_benign_corpus_is_answered(guard, seed):
    """All 200+ everyday prompts pass the default policy; the seed's list refuses a fifth of them."""
    prompts = [p for _, p in load("benign")]
    assert len(prompts) >= 200
    assert {t for t, _ in load("benign")} >= {"programming", "medicine and health", "history",
                                              "identity and relationships", "cooking and drink", "multilingual"}
    assert [p for p in prompts if guard.is_profane(p)] == []
    assert sum(seed.is_profane(p) for p in prompts) > 30


def test_abusive_corpus_is_refused(guard):
    """Every prompt of the abusive corpus (plain and disguised) is refused by the default policy."""
    prompts = [p for _, p in load("abusive")]
    assert len(prompts) > 50
    assert [p for p in prompts if not guard.is_profane(p)] == []


def test_unknown_corpus_is_an_error():
    """Asking for a corpus that does not ship names the ones that do."""
    with pytest.raises(ValueError, match="use one of"):
        load("nope")


def test_counted_words_are_reported_but_not_masked(guard):
    """A counted category (insult) is found with its category, passes input and stays in the answer."""
    [m] = guard.find("you idiot")
    assert (m.word, m.category, m.action, m.masked) == ("idiot", "insult", "count", False)
    assert not guard.is_profane("you idiot") and guard.censor("you idiot") == "you idiot"


def test_masked_category_passes_input_and_is_masked_in_answers(guard):
    """Sexual slang (mask) does not refuse a prompt but is masked in text."""
    assert not guard.is_profane("what is a blowjob")
    assert guard.censor("what is a blowjob") == "what is a ****"


def test_actions_override_single_categories():
    """actions changes one category and leaves the others as the policy says."""
    g = Guard(actions={"insult": "block", "topic": "count", "sexual": "allow"})
    assert g.is_profane("you idiot") and g.find("thank god")[0].category == "topic"
    assert g.find("blowjob") == [] and g.is_profane("shit")
    assert "topic" in g.categories and "sexual" not in g.categories


def test_name_entries_pass_in_title_case(guard):
    """An entry flagged as a name passes written as a name (Dick, Hell's) and is found otherwise."""
    assert guard.find("Dick Van Dyke and Moby Dick") == []
    assert [m.category for m in guard.find("you dick")] == ["vulgar"]
    assert guard.find("Hell's Kitchen") == [] and guard.is_profane("what the hell") and guard.is_profane("HELL")


def test_seed_policy_keeps_the_original_refusals(seed):
    """The better_profanity policy still refuses topic words, as the original kit did."""
    for prompt in ("kill the process", "thank god", "I'm gay", "a glass of rum"):
        assert seed.is_profane(prompt), prompt
