"""kit.perf.bench: ratios as records, goals, the side-by-side comparison and its settings."""

from __future__ import annotations

import pandas as pd
import pytest
from perfdata import SUMMARY, summary_frame

from kit import metrics
from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.perf import bench, load


def _by_label(found):
    return {r.label: r.value for r in found}


def test_ratios_per_level():
    """Throughput ratios and the TTFT difference are typed records, one per endpoint pair and level."""
    found = bench.ratios(SUMMARY)
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
    lines = [r.text() for r in bench.ratios(SUMMARY)]
    assert "pipeline/direct throughput at concurrency 48: 0.95" in lines
    assert "pipeline-direct TTFT p50 at concurrency 8: +1.2 ms" in lines
    assert "blocking/direct throughput at concurrency 8: 0.13" in lines


def test_ratios_without_blocking_or_with_several_budgets():
    """Missing endpoints give no ratio; several max_tokens values are named in the labels and kept in the records."""
    two = pd.concat([summary_frame([("direct", 1, 100.0, 5.0), ("pipeline", 1, 90.0, 6.0)]).assign(max_tokens=16),
                     summary_frame([("direct", 1, 200.0, 5.0), ("pipeline", 1, 150.0, 7.0)])])
    found = bench.ratios(two)
    values = _by_label(found)
    assert values["pipeline/direct throughput at concurrency 1 (max_tokens 16)"] == pytest.approx(0.9)
    assert values["pipeline/direct throughput at concurrency 1 (max_tokens 64)"] == pytest.approx(0.75)
    assert {r.max_tokens for r in found} == {16, 64}
    assert not any("blocking" in (r.numerator, r.denominator) for r in found)


def test_goals_report_met_and_missed():
    """The three goals are judged from the ratios; a TTFT gap of 8 ms misses its goal."""
    checks = {c["goal"].split()[0] + str(i): c for i, c in enumerate(bench.goals(SUMMARY))}
    met = [c["met"] for c in checks.values()]
    assert met == [True, False, True]
    assert "+8.0 ms" in list(checks.values())[1]["detail"]


def test_median_ratios_take_the_middle_repeat_and_keep_the_spread():
    """Over three repeats each figure is the median; one outlier repeat neither passes nor fails a goal."""
    repeats = [summary_frame([("direct", 8, 100.0, 5.0), ("pipeline", 8, tput, ttft)])
               for tput, ttft in ((96.0, 6.0), (60.0, 30.0), (93.0, 7.0))]
    found = {r.label: r for r in bench.median_ratios(repeats)}
    tput = found["pipeline/direct throughput at concurrency 8"]
    assert (tput.value, tput.low, tput.high) == pytest.approx((0.93, 0.60, 0.96))
    assert tput.text() == "pipeline/direct throughput at concurrency 8: 0.93 (0.60…0.96)"
    ttft = found["pipeline-direct TTFT p50 at concurrency 8"]
    assert ttft.value == pytest.approx(2.0) and ttft.shown == "+2.0 ms (+1.0…+25.0 ms)"
    checks = bench.goals(repeats[0], list(found.values()))
    assert [c["met"] for c in checks] == [True, True]  # the slow middle repeat alone would miss both
    assert [c["met"] for c in bench.goals(repeats[1])] == [False, False]


def test_one_repeat_is_the_plain_ratio():
    """With a single repeat there is no spread to show."""
    only = [summary_frame([("direct", 1, 100.0, 5.0), ("pipeline", 1, 90.0, 6.0)])]
    assert [r.text() for r in bench.median_ratios(only)] == [r.text() for r in bench.ratios(only[0])]


def test_bench_settings_refuse_zero_repeats():
    """A bench without a single comparison is refused with the setting's name."""
    with pytest.raises(ValueError, match="repeats must be"):
        bench.BenchSettings(repeats=0)


def test_compare_gives_blocking_fewer_requests(monkeypatch):
    """The blocking pipeline gets about as many requests as the concurrency; the others get the full count."""
    seen = {}

    def fake_sweep(grpc_url, endpoints, *, requests_per_level, concurrencies, **kwargs):
        seen["endpoints"] = dict(endpoints)
        seen["counts"] = {(label, c): requests_per_level(label, c) for label in endpoints for c in concurrencies}
        seen["streams_per_process"] = kwargs.get("streams_per_process")
        return pd.DataFrame(), pd.DataFrame()

    monkeypatch.setattr(load, "sweep", fake_sweep)
    bench.compare("grpc://x:1", concurrencies=[1, 8, 48], max_tokens=8, requests=lambda c: 3 * c + 10, prompts=["p"])
    assert seen["endpoints"] == {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL, "blocking": BLOCKING_MODEL}
    assert seen["counts"][("pipeline", 48)] == 154
    assert [seen["counts"][("blocking", c)] for c in (1, 8, 48)] == [2, 8, 48]
    assert seen["streams_per_process"] is None
    bench.compare("grpc://x:1", concurrencies=[2], max_tokens=8, requests=4, prompts=["p"], blocking=False,
                  streams_per_process=32)
    assert "blocking" not in seen["endpoints"] and seen["streams_per_process"] == 32


def test_settings_fill_the_defaults():
    """BenchSettings picks the default levels and token budget (smaller when quick) and the requests per level."""
    settings = bench.BenchSettings()
    assert settings.concurrency == bench.DEFAULT_CONCURRENCY and settings.max_tokens == bench.DEFAULT_MAX_TOKENS
    assert settings.streams_per_process is None  # one client process by default
    assert bench.BenchSettings(quick=True).max_tokens == bench.QUICK_MAX_TOKENS
    assert bench.BenchSettings(concurrency=(8, 1, 8)).concurrency == (1, 8)
    assert [settings.requests_at(c) for c in (1, 48)] == [32, 192]
    assert bench.BenchSettings(requests=5).requests_at(48) == 5


def test_guard_cost_from_server_counters():
    """The guard's server-side counters, read before and after, give its totals and µs per pipeline request."""
    before = dict.fromkeys(metrics.GUARD_COUNTERS, 0.0)
    after = {"kit_guard_prompts_blocked_total": 2.0, "kit_guard_words_censored_total": 5.0,
             "kit_guard_time_us_total": 800.0}
    cost = bench.guard_cost(before, after, requests=16)
    assert cost["guard_us_per_request"] == pytest.approx(50.0) and cost["kit_guard_words_censored_total"] == 5.0
    assert bench.guard_cost(None, after, 16) is None and bench.guard_cost(before, after, 0) is None
