"""kit.perf.headline: ratios as records, their medians over repeats, and the goals they are judged by."""

from __future__ import annotations

import pandas as pd
import pytest
from perfdata import SUMMARY, summary_frame

from kit.perf import headline


def _by_label(found):
    return {r.label: r.value for r in found}


def test_ratios_per_level():
    """Throughput ratios and the TTFT difference are typed records, one per endpoint pair and level."""
    found = headline.ratios(SUMMARY)
    values = _by_label(found)
    assert values["pipeline/direct throughput at concurrency 48"] == pytest.approx(0.95)
    assert values["pipeline-direct TTFT p50 at concurrency 8"] == pytest.approx(1.2)
    assert values["blocking/direct throughput at concurrency 8"] == pytest.approx(0.13)
    assert values["pipeline/blocking throughput at concurrency 48"] == pytest.approx(38.0)
    assert len(found) == 8
    ttft = next(r for r in found if r.metric == "ttft" and r.concurrency == 8)
    assert (ttft.numerator, ttft.denominator, ttft.max_tokens, ttft.where) == ("pipeline", "direct", 64, "concurrency 8")


def test_ratio_lines_read_like_the_headline():
    """Ratios print with two decimals, TTFT differences as signed milliseconds."""
    lines = [r.text() for r in headline.ratios(SUMMARY)]
    assert "pipeline/direct throughput at concurrency 48: 0.95" in lines
    assert "pipeline-direct TTFT p50 at concurrency 8: +1.2 ms" in lines
    assert "blocking/direct throughput at concurrency 8: 0.13" in lines


def test_ratios_without_blocking_or_with_several_budgets():
    """Missing endpoints give no ratio; several max_tokens values are named in the labels and kept in the records."""
    two = pd.concat([summary_frame([("direct", 1, 100.0, 5.0), ("pipeline", 1, 90.0, 6.0)]).assign(max_tokens=16),
                     summary_frame([("direct", 1, 200.0, 5.0), ("pipeline", 1, 150.0, 7.0)])])
    found = headline.ratios(two)
    values = _by_label(found)
    assert values["pipeline/direct throughput at concurrency 1 (max_tokens 16)"] == pytest.approx(0.9)
    assert values["pipeline/direct throughput at concurrency 1 (max_tokens 64)"] == pytest.approx(0.75)
    assert {r.max_tokens for r in found} == {16, 64}
    assert not any("blocking" in (r.numerator, r.denominator) for r in found)


def test_goals_report_met_and_missed():
    """The three goals are judged from the ratios; a TTFT gap of 8 ms misses its goal."""
    checks = {c["goal"].split()[0] + str(i): c for i, c in enumerate(headline.goals(SUMMARY))}
    met = [c["met"] for c in checks.values()]
    assert met == [True, False, True]
    assert "+8.0 ms" in list(checks.values())[1]["detail"]


def test_median_ratios_take_the_middle_repeat_and_keep_the_spread():
    """Over three repeats each figure is the median; one outlier repeat neither passes nor fails a goal."""
    repeats = [summary_frame([("direct", 8, 100.0, 5.0), ("pipeline", 8, tput, ttft)])
               for tput, ttft in ((96.0, 6.0), (60.0, 30.0), (93.0, 7.0))]
    found = {r.label: r for r in headline.median_ratios(repeats)}
    tput = found["pipeline/direct throughput at concurrency 8"]
    assert (tput.value, tput.low, tput.high) == pytest.approx((0.93, 0.60, 0.96))
    assert tput.text() == "pipeline/direct throughput at concurrency 8: 0.93 (0.60…0.96)"
    ttft = found["pipeline-direct TTFT p50 at concurrency 8"]
    assert ttft.value == pytest.approx(2.0) and ttft.shown == "+2.0 ms (+1.0…+25.0 ms)"
    checks = headline.goals(repeats[0], list(found.values()))
    assert [c["met"] for c in checks] == [True, True]  # the slow middle repeat alone would miss both
    assert [c["met"] for c in headline.goals(repeats[1])] == [False, False]


def test_one_repeat_is_the_plain_ratio():
    """With a single repeat there is no spread to show."""
    only = [summary_frame([("direct", 1, 100.0, 5.0), ("pipeline", 1, 90.0, 6.0)])]
    assert [r.text() for r in headline.median_ratios(only)] == [r.text() for r in headline.ratios(only[0])]
