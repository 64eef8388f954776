"""kit.perf.stats: the summary of a load run, its columns and its arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from perfdata import requests_frame

from kit.perf import stats


def test_summarize_columns_come_first_and_in_order():
    """The summary starts with exactly SWEEP_COLUMNS."""
    summary = stats.summarize(requests_frame("direct", 1, [(0.0, 0.01, 0.1, "")]))
    assert list(summary.columns[: len(stats.SWEEP_COLUMNS)]) == stats.SWEEP_COLUMNS
    assert stats.SWEEP_COLUMNS == ["endpoint", "concurrency", "max_tokens", "requests", "output_tokens_per_s",
                                  "ttft_p50_ms", "itl_mean_ms", "latency_p50_s", "errors", "responses_per_request"]


def test_summarize_arithmetic():
    """Throughput is tokens over the level's wall time; ITL is (latency − TTFT)/(tokens − 1)."""
    rows = [(0.0, 0.010, 0.100, ""), (0.0, 0.020, 0.190, ""), (0.1, 0.030, 0.300, ""), (0.2, 0.0, 0.05, "boom")]
    summary = stats.summarize(requests_frame("pipeline", 2, rows, max_tokens=10))
    row = summary.iloc[0]
    assert row["requests"] == 4 and row["errors"] == 1
    wall = 0.4  # first start 0.0, last end 0.1 + 0.3
    assert row["wall_s"] == pytest.approx(wall)
    assert row["output_tokens"] == 30
    assert row["output_tokens_per_s"] == pytest.approx(30 / wall)
    assert row["requests_per_s"] == pytest.approx(3 / wall)
    assert row["responses_per_request"] == 10  # the successful requests' streamed responses
    assert row["ttft_p50_ms"] == pytest.approx(20.0)
    itl = [(0.1 - 0.01) / 9, (0.19 - 0.02) / 9, (0.3 - 0.03) / 9]
    assert row["itl_mean_ms"] == pytest.approx(np.mean(itl) * 1e3)
    assert row["latency_p50_s"] == pytest.approx(0.19)
    assert row["latency_p99_s"] == pytest.approx(np.percentile([0.1, 0.19, 0.3], 99))


def test_summarize_one_row_per_level_in_measured_order():
    """Rows are grouped by endpoint, concurrency and max_tokens; endpoints keep their measured order."""
    frame = pd.concat([
        requests_frame("pipeline", 1, [(0, 0.01, 0.1, "")]), requests_frame("direct", 1, [(0, 0.01, 0.1, "")]),
        requests_frame("pipeline", 4, [(0, 0.01, 0.1, "")]), requests_frame("direct", 4, [(0, 0.01, 0.1, "")]),
    ])
    summary = stats.summarize(frame)
    assert list(zip(summary["concurrency"], summary["endpoint"], strict=True)) == [
        (1, "pipeline"), (1, "direct"), (4, "pipeline"), (4, "direct")]


def test_inter_token_latency_needs_two_tokens():
    """A one-token answer has no inter-token latency."""
    frame = pd.DataFrame({"latency_s": [0.5, 0.5], "ttft_s": [0.1, 0.1], "output_tokens": [1, 5]})
    itl = stats.inter_token_latency_s(frame)
    assert math.isnan(itl.iloc[0]) and itl.iloc[1] == pytest.approx(0.1)
