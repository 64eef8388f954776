"""Policies: what the guard does about each category of word.

Every entry of a word list belongs to a category (``kit/guardrails/words.txt``).
A policy maps each category to an action:

``block``
    the input guard refuses a prompt that contains it, and the output censor
    masks it in answers;
``mask``
    prompts pass, answers have it masked;
``count``
    nothing is changed; the pipeline counts it (one metric label per category);
``allow``
    not looked for at all.

Two named policies ship: ``default`` (blocks obscenities, slurs and harmful
phrases; masks explicit sexual slang in answers; counts mild vulgar words,
insults, violence and drugs; topic words pass)
and ``better_profanity`` (the original showcase's behaviour: better-profanity's
whole list, plus the kit's seed entries, blocked). ``actions`` overrides single
categories of either, e.g. ``{"insult": "mask"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kit.exceptions import ConfigError

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "MASKING",
    "POLICIES",
    "resolve_actions",
]

#: What a policy may do with a category, strongest first.
ACTIONS = ("block", "mask", "count", "allow")
#: Actions whose matches are replaced by ``****`` in answers.
MASKING = frozenset({"block", "mask"})
#: Categories of the kit's word list, plus ``custom`` (``extra_words`` and
#: ``words``) and ``unsorted`` (better-profanity entries the kit's list lacks).
CATEGORIES = (
    "obscenity",
    "vulgar",
    "slur",
    "sexual",
    "harm",
    "insult",
    "violence",
    "drugs",
    "topic",
    "custom",
    "unsorted",
)

_DEFAULT = {
    "obscenity": "block",
    "vulgar": "count",
    "slur": "block",
    "sexual": "mask",
    "harm": "block",
    "insult": "count",
    "violence": "count",
    "drugs": "count",
    "topic": "allow",
    "custom": "block",
    "unsorted": "allow",
}
#: The named policies: category -> action.
POLICIES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "default": MappingProxyType(_DEFAULT),
    "better_profanity": MappingProxyType(dict.fromkeys(CATEGORIES, "block")),
})


def resolve_actions(policy: object = "default", actions: object = None) -> dict[str, str]:
    """The action of every category: ``policy``'s, overridden by ``actions``.

    Raises ConfigError naming the fix for an unknown policy, category or action,
    or for values of the wrong type.
    """
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ConfigError(
            f"guard policy {policy!r} is unknown: set policy to one of {sorted(POLICIES)} "
            "(in the parameters file or notebook 01)."
        )
    resolved = dict(POLICIES[policy])
    if actions is None:
        return resolved
    if not isinstance(actions, Mapping):
        raise ConfigError(
            f"guard actions must be a mapping of category: action, got {type(actions).__name__}: "
            'write it as {"insult": "mask"}.'
        )
    for category, action in actions.items():
        if category not in resolved:
            raise ConfigError(
                f"guard actions name an unknown category {category!r}: use one of {list(CATEGORIES)}."
            )
        if action not in ACTIONS:
            raise ConfigError(
                f"guard action {action!r} for category {category!r} is unknown: use one of {list(ACTIONS)}."
            )
        resolved[category] = action
    return resolved
