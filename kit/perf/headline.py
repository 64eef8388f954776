"""The headline figures of a side-by-side run, and the project's performance goals.

:func:`kit.perf.bench.compare` measures the endpoints (``direct``, ``pipeline``,
``blocking``) level by level; :func:`ratios` turns its summary into typed
:class:`Ratio` records (output tokens/s ratios, the TTFT p50 difference in ms),
:func:`median_ratios` combines repeats, and :func:`goals` judges them against the
targets below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

GOAL_THROUGHPUT = 0.9  # pipeline ≥ 0.9 × direct output tokens/s
GOAL_TTFT_MS = 5.0  # pipeline TTFT p50 within 5 ms of direct
GOAL_BLOCKING = 0.5  # blocking well under 0.5 × direct at concurrency 8
GOAL_BLOCKING_CONCURRENCY = 8


@dataclass(frozen=True)
class Ratio:
    """One headline figure of a side-by-side run, at one concurrency level and token budget.

    ``metric`` is ``throughput`` (``value`` = numerator's / denominator's output
    tokens/s, a plain ratio) or ``ttft`` (``value`` = numerator's TTFT p50 minus
    the denominator's, in ms). ``label`` is the sentence printed and saved. Over several
    repeats (:func:`median_ratios`) ``value`` is the median and ``low``/``high`` the spread.
    """

    metric: str
    numerator: str
    denominator: str
    concurrency: int
    max_tokens: int
    value: float
    label: str = field(default="", compare=False)
    low: float = field(default=math.nan, compare=False)
    high: float = field(default=math.nan, compare=False)

    @property
    def where(self) -> str:
        """The level, as the label ends: ``concurrency 8`` (``(max_tokens 64)`` added when several budgets ran)."""
        return self.label.split(" at ", 1)[-1]

    @property
    def shown(self) -> str:
        """The value as printed: a ratio with two decimals, a TTFT difference in signed ms; the spread
        of the repeats follows in parentheses when there were several."""
        form = "{:+.1f}" if self.metric == "ttft" else "{:.2f}"
        unit = " ms" if self.metric == "ttft" else ""
        spread = "" if math.isnan(self.low) else f" ({form.format(self.low)}…{form.format(self.high)}{unit})"
        return form.format(self.value) + unit + spread

    def text(self) -> str:
        """``label: value``, the line the bench prints."""
        return f"{self.label}: {self.shown}"



def _row(summary: pd.DataFrame, endpoint: str, concurrency: int, max_tokens: int) -> pd.Series | None:
    rows = summary[(summary["endpoint"] == endpoint) & (summary["concurrency"] == concurrency)
                   & (summary["max_tokens"] == max_tokens)]
    return None if rows.empty else rows.iloc[0]


RATIO_PAIRS = (("throughput", "pipeline", "direct"), ("ttft", "pipeline", "direct"),
               ("throughput", "blocking", "direct"), ("throughput", "pipeline", "blocking"))
"""The headline figures, in the order printed: (metric, numerator, denominator)."""


def ratios(summary: pd.DataFrame) -> list[Ratio]:
    """Headline ratios per level (:data:`RATIO_PAIRS`): output tokens/s ratios and the pipeline-direct
    TTFT p50 difference (ms); a missing endpoint gives no ratio."""
    out: list[Ratio] = []
    several = summary["max_tokens"].nunique() > 1
    for max_tokens in sorted(summary["max_tokens"].unique()):
        suffix = f" (max_tokens {max_tokens})" if several else ""
        for concurrency in sorted(summary[summary["max_tokens"] == max_tokens]["concurrency"].unique()):
            rows = {label: _row(summary, label, concurrency, max_tokens) for pair in RATIO_PAIRS for label in pair[1:]}
            where = f"at concurrency {concurrency}{suffix}"
            for metric, a, b in RATIO_PAIRS:
                if rows[a] is None or rows[b] is None:
                    continue
                if metric == "ttft":
                    value = float(rows[a]["ttft_p50_ms"] - rows[b]["ttft_p50_ms"])
                    label = f"{a}-{b} TTFT p50 {where}"
                else:
                    value = _div(rows[a]["output_tokens_per_s"], rows[b]["output_tokens_per_s"])
                    label = f"{a}/{b} throughput {where}"
                out.append(Ratio(metric, a, b, int(concurrency), int(max_tokens), value, label))
    return out


def median_ratios(summaries: Sequence[pd.DataFrame]) -> list[Ratio]:
    """The :func:`ratios` of several repeats of one comparison: per figure the median value, with the
    lowest and highest as its spread, so that one noisy repeat can neither pass nor fail a goal."""
    def key(r: Ratio) -> tuple:
        return r.metric, r.numerator, r.denominator, r.concurrency, r.max_tokens

    per_repeat = [{key(r): r for r in ratios(summary)} for summary in summaries]
    out = []
    for k, first in per_repeat[0].items():
        values = sorted(found[k].value for found in per_repeat if k in found and not math.isnan(found[k].value))
        if not values:
            out.append(first)
            continue
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        out.append(replace(first, value=median, low=values[0], high=values[-1]) if len(summaries) > 1
                   else first)
    return out


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b and not math.isnan(float(b)) else float("nan")


def goals(summary: pd.DataFrame, found: Sequence[Ratio] | None = None) -> list[dict[str, Any]]:
    """The project's performance goals, each with ``goal``, ``met`` and the figures behind it.

    ``found`` are the ratios to judge (by default those of ``summary``; the bench passes the
    medians of its repeats)."""
    found = list(ratios(summary) if found is None else found)

    def pick(metric: str, numerator: str) -> list[Ratio]:
        """The ratios of one metric with ``numerator`` over the direct LLM."""
        return [r for r in found if r.metric == metric and r.numerator == numerator and r.denominator == "direct"]

    out = []
    tput = pick("throughput", "pipeline")
    if tput:
        worst = min(tput, key=lambda r: r.value)
        out.append({"goal": f"pipeline ≥ {GOAL_THROUGHPUT}× direct output tokens/s at every concurrency",
                    "met": all(r.value >= GOAL_THROUGHPUT for r in tput),
                    "detail": f"lowest {worst.shown} ({worst.where})"})
    ttft = pick("ttft", "pipeline")
    if ttft:
        worst = max(ttft, key=lambda r: abs(r.value))
        out.append({"goal": f"pipeline TTFT p50 within {GOAL_TTFT_MS:g} ms of direct at every concurrency",
                    "met": all(abs(r.value) <= GOAL_TTFT_MS for r in ttft),
                    "detail": f"largest difference {worst.shown} ({worst.where})"})
    at = [r for r in pick("throughput", "blocking") if r.concurrency == GOAL_BLOCKING_CONCURRENCY]
    if at:
        value = at[0].value
        out.append({"goal": f"blocking < {GOAL_BLOCKING}× direct output tokens/s at concurrency "
                            f"{GOAL_BLOCKING_CONCURRENCY}",
                    "met": value < GOAL_BLOCKING, "detail": f"{value:.2f}"})
    return out
