"""Prompt corpora shipped with the guard, for tests, benchmarks and notebook 03.

``benign.txt``: everyday prompts (programming, medicine, history, identity,
science, cooking, culture, numbers, twenty languages) that the default policy
must answer. ``abusive.txt``: prompts it must refuse (obscenities, slurs,
harmful phrases, plain and disguised). One prompt per line; a ``# topic``
line names the topic of the prompts below it. Written for the kit.
"""

from __future__ import annotations

import functools
import os

__all__ = ["NAMES", "load"]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: The corpora that ship.
NAMES = ("benign", "abusive")


@functools.lru_cache(maxsize=len(NAMES))
def load(name: str) -> tuple[tuple[str, str], ...]:
    """``(topic, prompt)`` pairs of corpus ``name``; ValueError names the corpora for another name."""
    if name not in NAMES:
        raise ValueError(f"unknown corpus {name!r}: use one of {list(NAMES)}")
    out = []
    topic = ""
    with open(os.path.join(_HERE, f"{name}.txt"), encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("# "):
                topic = line[2:]
            elif line and not line.startswith("#"):
                out.append((topic, line))
    return tuple(out)
