"""kit.perf.bench: the side-by-side comparison, its settings and the guard's cost on the server."""

from __future__ import annotations

import pandas as pd
import pytest

from kit import metrics
from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.perf import bench, load


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
