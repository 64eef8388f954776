"""kit.plots: one figure per view, the seed's published numbers, offline HTML."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from perfdata import RECORDED_CSV, SUMMARY, requests_frame, summary_frame

from kit import plots
from kit.config import PIPELINE_MODEL
from kit.perf import perf_analyzer as pa


def _names(fig):
    return [t.name for t in fig.data]


def _seed(fig):
    traces = [t for t in fig.data if t.name == plots.SEED_LABEL]
    assert len(traces) == 1
    return traces[0]


def test_seed_tables_hold_the_published_numbers():
    """The reference series are the seed's published perf_analyzer tables."""
    assert plots.SEED_CONCURRENCY["latency_avg_s"].tolist() == [31.9, 63.6, 95.9, 126.9]
    assert plots.SEED_CONCURRENCY["throughput_infer_s"].tolist() == [0.0333] * 4
    assert plots.SEED_MAX_TOKENS["max_tokens"].tolist() == [50, 300, 600]
    assert plots.SEED_MAX_TOKENS["throughput_infer_s"].tolist() == [1.22218, 0.205551, 0.099998]
    assert plots.SEED_MAX_TOKENS["latency_avg_s"].tolist() == [0.81, 4.76, 9.51]
    assert "RTX 4090" in plots.SEED_LABEL


def test_latency_vs_concurrency_has_one_line_per_endpoint_and_the_seed():
    """Each endpoint is a line; the seed's latencies are a dashed reference on a log axis."""
    fig = plots.latency_vs_concurrency(SUMMARY)
    assert isinstance(fig, go.Figure)
    assert _names(fig) == ["direct", "pipeline", "blocking", plots.SEED_LABEL]
    assert list(_seed(fig).y) == [31.9, 63.6, 95.9, 126.9]
    assert _seed(fig).line.dash == "dash"
    assert fig.layout.yaxis.type == "log"
    assert list(fig.data[0].x) == [8, 48] and list(fig.data[0].y) == [0.1, 0.1]
    assert plots.SEED_LABEL not in _names(plots.latency_vs_concurrency(SUMMARY, reference=False))


def test_latency_vs_concurrency_accepts_perf_analyzer_rows(tmp_path):
    """perf_analyzer results plot on the same chart, named by model, latency in seconds."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path).assign(model=PIPELINE_MODEL, max_tokens=16)
    fig = plots.latency_vs_concurrency(df)
    assert _names(fig)[0] == PIPELINE_MODEL
    assert list(fig.data[0].y) == pytest.approx([0.047507, 0.066649], abs=1e-5)


def test_throughput_vs_concurrency_panels():
    """Both metrics side by side; the seed's infer/s sits on the requests panel only."""
    fig = plots.throughput_vs_concurrency(SUMMARY)
    seed = _seed(fig)
    assert seed.xaxis == "x2" and list(seed.y) == [0.0333] * 4
    tokens = [t for t in fig.data if t.name == "pipeline" and t.xaxis == "x"][0]
    assert list(tokens.y) == [950.0, 3800.0]
    only_tokens = plots.throughput_vs_concurrency(SUMMARY, metric="output_tokens_per_s")
    assert plots.SEED_LABEL not in _names(only_tokens)
    only_requests = plots.throughput_vs_concurrency(SUMMARY, metric="requests_per_s")
    assert plots.SEED_LABEL in _names(only_requests)
    with pytest.raises(ValueError):
        plots.throughput_vs_concurrency(SUMMARY, metric="watts")


def test_latency_vs_max_tokens_uses_the_lowest_concurrency():
    """The max_tokens chart compares at one concurrency, with the seed's 50/300/600 tokens."""
    frame = pd.concat([summary_frame([("direct", 1, 100.0, 5.0)]).assign(max_tokens=m, latency_p50_s=m / 100)
                       for m in (16, 64)] + [summary_frame([("direct", 4, 100.0, 5.0)]).assign(max_tokens=16)])
    fig = plots.latency_vs_max_tokens(frame)
    assert list(fig.data[0].x) == [16, 64] and list(fig.data[0].y) == [0.16, 0.64]
    assert list(_seed(fig).x) == [50, 300, 600]
    assert "concurrency 1" in fig.layout.title.text


def test_distributions_have_a_box_per_endpoint_without_errors():
    """TTFT and ITL boxes hold only successful requests, in milliseconds."""
    frame = pd.concat([requests_frame("direct", 1, [(0, 0.010, 0.1, ""), (0.1, 0.02, 0.2, "")]),
                       requests_frame("pipeline", 1, [(0, 0.012, 0.1, ""), (0.1, 0.0, 0.0, "failed")])])
    ttft = plots.ttft_distribution(frame)
    assert [type(t).__name__ for t in ttft.data] == ["Box", "Box"]
    assert _names(ttft) == ["direct", "pipeline"]
    assert list(ttft.data[1].y) == pytest.approx([12.0])
    itl = plots.itl_distribution(frame)
    assert list(itl.data[0].y) == pytest.approx([(0.1 - 0.01) / 9 * 1e3, (0.2 - 0.02) / 9 * 1e3])


def test_endpoints_comparison_puts_three_endpoints_on_one_chart():
    """Tokens/s and TTFT bars for each endpoint, one legend entry per endpoint."""
    fig = plots.endpoints_comparison(SUMMARY)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 6
    assert [t.name for t in bars if t.showlegend is not False] == ["direct", "pipeline", "blocking"]
    assert list(bars[0].x) == ["8", "48"]


def test_perf_analyzer_sweep_by_concurrency_and_by_max_tokens(tmp_path):
    """Throughput bars plus p50/p99 latency lines; the x axis follows what varies."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path).assign(model=PIPELINE_MODEL, max_tokens=16, latency_measures="first_response")
    fig = plots.perf_analyzer_sweep(df)
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Scatter", "Scatter"]
    assert list(fig.data[0].x) == ["1", "2"]
    assert "first response" in fig.layout.title.text
    by_tokens = df.assign(concurrency=1, max_tokens=[50, 300])
    assert list(plots.perf_analyzer_sweep(by_tokens).data[0].x) == ["50", "300"]


def test_to_html_embeds_plotly_inline():
    """The page works offline: plotly.js is inline, there is no external script."""
    page = plots.to_html(plots.latency_vs_concurrency(SUMMARY), plots.endpoints_comparison(SUMMARY), title="bench")
    assert "<script src=" not in page
    assert 'src="https://cdn.plot.ly' not in page
    assert page.count("Plotly.newPlot") == 2
    assert len(page) > 1_000_000  # plotly.js itself
    assert "<title>bench</title>" in page


def _sweep(rates: dict) -> pd.DataFrame:
    return pd.DataFrame([{"endpoint": e, "concurrency": c, "max_tokens": 300, "output_tokens_per_s": v}
                         for (e, c), v in rates.items()])


def test_precision_ratios_only_at_shared_levels():
    bf16 = _sweep({("direct", 1): 200.0, ("direct", 64): 10000.0, ("pipeline", 1): 200.0, ("pipeline", 2): 400.0})
    fp8 = _sweep({("direct", 1): 290.0, ("direct", 64): 12500.0, ("pipeline", 1): 288.0, ("pipeline", 512): 9.0})
    ratios = plots.precision_ratios(bf16, fp8)
    assert list(zip(ratios["endpoint"], ratios["concurrency"], strict=True)) == [("direct", 1), ("direct", 64),
                                                                                  ("pipeline", 1)]
    assert ratios["ratio"].round(3).tolist() == [1.45, 1.25, 1.44]


def test_precision_comparison_has_two_bars_and_a_ratio_line_per_endpoint():
    bf16 = _sweep({("direct", 1): 200.0, ("pipeline", 1): 200.0})
    fp8 = _sweep({("direct", 1): 290.0, ("pipeline", 1): 288.0})
    fig = plots.precision_comparison(bf16, fp8)
    assert [t.name for t in fig.data if t.type == "bar"] == ["direct bf16", "direct FP8", "pipeline bf16", "pipeline FP8"]
    assert [t.name for t in fig.data if t.type == "scatter"] == ["direct FP8 ÷ bf16", "pipeline FP8 ÷ bf16"]
    with pytest.raises(ValueError, match="share no endpoint"):
        plots.precision_comparison(bf16, _sweep({("direct", 8): 1.0}))
