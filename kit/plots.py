"""Plotly figures of the kit's measurements, with the original showcase's numbers as a reference.

Every function returns a :class:`plotly.graph_objects.Figure` and never shows it.
The inputs are the DataFrames of :mod:`kit.perf.load` (``summarize`` rows, per-request
rows) and of :mod:`kit.perf.perf_analyzer` (one row per measurement); the concurrency and
latency charts accept either.

``SEED_CONCURRENCY`` and ``SEED_MAX_TOKENS`` hold the tables the original showcase
published (Llama-3-8B-Instruct on an RTX 4090, ``perf_analyzer`` over HTTP, average
latency of the whole request). They are drawn as a dashed series named
:data:`SEED_LABEL`. Charts that mix them with a tiny CPU model use a log axis: the
absolute values differ by orders of magnitude, the shapes are what compare.

:func:`to_html` writes figures into one self-contained HTML page (plotly.js inline,
no network needed to view it).
"""

from __future__ import annotations

import html as html_lib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SEED_LABEL = "seed (RTX 4090, published)"

SEED_CONCURRENCY = pd.DataFrame({
    "concurrency": [1, 2, 3, 4],
    "throughput_infer_s": [0.0333, 0.0333, 0.0333, 0.0333],
    "latency_avg_s": [31.9, 63.6, 95.9, 126.9],
    "label": SEED_LABEL,
})
SEED_MAX_TOKENS = pd.DataFrame({
    "max_tokens": [50, 300, 600],
    "concurrency": [1, 1, 1],
    "throughput_infer_s": [1.22218, 0.205551, 0.099998],
    "latency_avg_s": [0.81, 4.76, 9.51],
    "label": SEED_LABEL,
})

_SEED_STYLE = dict(color="#7f7f7f", dash="dash", width=2)
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_TEMPLATE = "plotly_white"


# --------------------------------------------------------------------------- inputs


def _measurements(frame: pd.DataFrame) -> pd.DataFrame:
    """Load summaries and perf_analyzer rows in one shape.

    Columns: ``series``, ``concurrency``, ``max_tokens``, ``latency_s``, ``requests_per_s``,
    ``output_tokens_per_s``, ``ttft_ms`` (NaN where the source has no such figure).
    """
    if frame is None or len(frame) == 0:
        raise ValueError("nothing to plot: the DataFrame is empty")
    df = frame.copy()
    out = pd.DataFrame(index=df.index)
    out["series"] = df["endpoint"] if "endpoint" in df else df.get("model", pd.Series("measured", index=df.index))
    out["concurrency"] = df["concurrency"].astype(int)
    out["max_tokens"] = df["max_tokens"].astype(int) if "max_tokens" in df else 0
    if "latency_p50_s" in df:  # kit.perf.load summary
        out["latency_s"] = df["latency_p50_s"]
        out["latency_kind"] = "p50, whole answer"
        if "requests_per_s" in df:
            out["requests_per_s"] = df["requests_per_s"]
        elif "wall_s" in df:
            out["requests_per_s"] = (df["requests"] - df.get("errors", 0)) / df["wall_s"]
        else:
            out["requests_per_s"] = np.nan
        out["output_tokens_per_s"] = df["output_tokens_per_s"]
        out["ttft_ms"] = df.get("ttft_p50_ms", np.nan)
    elif "throughput_infer_s" in df:  # kit.perf.perf_analyzer
        out["latency_s"] = df["latency_avg_ms"] / 1e3
        first = "latency_measures" in df and (df["latency_measures"] == "first_response").all()
        out["latency_kind"] = "avg, first response" if first else "avg"
        out["requests_per_s"] = df["throughput_infer_s"]
        out["output_tokens_per_s"] = df["throughput_infer_s"] * out["max_tokens"] if "max_tokens" in df else np.nan
        out["ttft_ms"] = df["latency_p50_ms"] if first else np.nan
    else:
        raise ValueError("expected a kit.perf.load summary (latency_p50_s, output_tokens_per_s) or "
                         "perf_analyzer results (throughput_infer_s, latency_avg_ms); got columns "
                         f"{list(frame.columns)}")
    return out


def _label(series: str, max_tokens: int, several: bool) -> str:
    return f"{series} · {max_tokens} tokens" if several else str(series)


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _lines(fig: go.Figure, data: pd.DataFrame, x: str, y: str, *, group_by_tokens: bool, row=None, col=None,
           showlegend: bool = True, hover_unit: str = "") -> None:
    several = group_by_tokens and data["max_tokens"].nunique() > 1
    keys = ["series", "max_tokens"] if several else ["series"]
    for i, (key, group) in enumerate(data.groupby(keys, sort=False)):
        key = key if isinstance(key, tuple) else (key,)
        series, tokens = key[0], (key[1] if several else 0)
        group = group.sort_values(x)
        trace = go.Scatter(x=group[x], y=group[y], mode="lines+markers", name=_label(series, tokens, several),
                           legendgroup=_label(series, tokens, several), showlegend=showlegend,
                           line=dict(color=_color(i), width=2),
                           hovertemplate=f"%{{x}}: %{{y:.4g}}{hover_unit}<extra>%{{fullData.name}}</extra>")
        if row is None:
            fig.add_trace(trace)
        else:
            fig.add_trace(trace, row=row, col=col)


def _seed_trace(x, y, *, showlegend: bool = True) -> go.Scatter:
    return go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=SEED_LABEL, legendgroup=SEED_LABEL,
                      showlegend=showlegend, line=_SEED_STYLE, marker=dict(symbol="diamond", size=8))


# --------------------------------------------------------------------------- the seed's charts


def latency_vs_concurrency(summary: pd.DataFrame, reference: bool = True) -> go.Figure:
    """Latency against concurrency, one line per endpoint (and max_tokens), the seed dashed."""
    data = _measurements(summary)
    fig = go.Figure()
    _lines(fig, data, "concurrency", "latency_s", group_by_tokens=True, hover_unit=" s")
    kind = data["latency_kind"].iloc[0]
    if reference:
        fig.add_trace(_seed_trace(SEED_CONCURRENCY["concurrency"], SEED_CONCURRENCY["latency_avg_s"]))
    fig.update_layout(
        title="Latency as concurrency grows" + (" (seed: average latency)" if reference else ""),
        xaxis_title="concurrent requests", yaxis_title=f"latency, s ({kind})", template=_TEMPLATE,
        legend_title_text="endpoint",
    )
    if reference:
        fig.update_yaxes(type="log")
    return fig


def throughput_vs_concurrency(summary: pd.DataFrame, reference: bool = True, metric: str = "both") -> go.Figure:
    """Throughput against concurrency: ``output_tokens_per_s``, ``requests_per_s`` (infer/s) or ``both``.

    The seed only published requests per second, so its reference line appears on the
    requests panel.
    """
    metrics = {"output_tokens_per_s": "output tokens/s", "requests_per_s": "requests/s (infer/s)"}
    if metric not in (*metrics, "both"):
        raise ValueError(f"metric must be one of {[*metrics, 'both']}, got {metric!r}")
    data = _measurements(summary)
    chosen = list(metrics) if metric == "both" else [metric]
    fig = make_subplots(rows=1, cols=len(chosen), subplot_titles=[metrics[m] for m in chosen])
    for col, name in enumerate(chosen, start=1):
        _lines(fig, data.dropna(subset=[name]), "concurrency", name, group_by_tokens=True, row=1, col=col,
               showlegend=col == 1)
        fig.update_xaxes(title_text="concurrent requests", row=1, col=col)
        fig.update_yaxes(title_text=metrics[name], row=1, col=col)
        if reference and name == "requests_per_s":
            fig.add_trace(_seed_trace(SEED_CONCURRENCY["concurrency"], SEED_CONCURRENCY["throughput_infer_s"]),
                          row=1, col=col)
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(title="Throughput as concurrency grows", template=_TEMPLATE, legend_title_text="endpoint")
    return fig


def latency_vs_max_tokens(summary: pd.DataFrame, reference: bool = True, concurrency: int | None = None) -> go.Figure:
    """Latency against ``max_tokens`` at one concurrency (default: the lowest measured, as the seed's 1)."""
    data = _measurements(summary)
    level = int(data["concurrency"].min()) if concurrency is None else int(concurrency)
    data = data[data["concurrency"] == level]
    if data.empty:
        raise ValueError(f"no measurement at concurrency {level}")
    fig = go.Figure()
    _lines(fig, data, "max_tokens", "latency_s", group_by_tokens=False, hover_unit=" s")
    if reference:
        fig.add_trace(_seed_trace(SEED_MAX_TOKENS["max_tokens"], SEED_MAX_TOKENS["latency_avg_s"]))
        fig.update_yaxes(type="log")
    fig.update_layout(
        title=f"Latency as the answer grows (concurrency {level})",
        xaxis_title="max_tokens (output tokens per request)",
        yaxis_title=f"latency, s ({data['latency_kind'].iloc[0]})", template=_TEMPLATE, legend_title_text="endpoint",
    )
    return fig


# --------------------------------------------------------------------------- token-level views


def _successful(per_request: pd.DataFrame) -> pd.DataFrame:
    if per_request is None or len(per_request) == 0:
        raise ValueError("nothing to plot: no per-request rows")
    errors = per_request["error"]
    ok = errors.isna() | (errors.astype(str).str.strip() == "")
    return per_request[ok]


def _with_levels(data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``data`` with an ``_x`` category per level (``"8"``, or ``"8 · 300 tok"`` when max_tokens varies), and the axis title."""
    several = data["max_tokens"].nunique() > 1
    labels = [f"{c} · {m} tok" if several else str(c) for c, m in zip(data["concurrency"], data["max_tokens"], strict=True)]
    return data.assign(_x=labels), "concurrency" + (" · max_tokens" if several else "")


def _boxes(per_request: pd.DataFrame, values: pd.Series, title: str, y_title: str) -> go.Figure:
    data, x_title = _with_levels(per_request.assign(_value=values).dropna(subset=["_value"]))
    order = (data[["concurrency", "max_tokens", "_x"]].drop_duplicates()
             .sort_values(["max_tokens", "concurrency"])["_x"].tolist())
    fig = go.Figure()
    for i, (endpoint, group) in enumerate(data.groupby("endpoint", sort=False)):
        fig.add_trace(go.Box(x=group["_x"], y=group["_value"], name=str(endpoint), marker_color=_color(i),
                             boxpoints="outliers"))
    fig.update_layout(title=title, boxmode="group", template=_TEMPLATE, yaxis_title=y_title,
                      xaxis_title=x_title, legend_title_text="endpoint")
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    return fig


def ttft_distribution(per_request: pd.DataFrame) -> go.Figure:
    """Time to first token of every successful request, a box per endpoint and concurrency."""
    ok = _successful(per_request)
    return _boxes(ok, ok["ttft_s"] * 1e3, "Time to first token", "TTFT, ms")


def itl_distribution(per_request: pd.DataFrame) -> go.Figure:
    """Inter-token latency ``(latency − TTFT) / (output_tokens − 1)`` of every successful request."""
    from kit.perf.load import inter_token_latency_s

    ok = _successful(per_request)
    return _boxes(ok, inter_token_latency_s(ok) * 1e3, "Inter-token latency", "ITL, ms per token")


def endpoints_comparison(summary: pd.DataFrame) -> go.Figure:
    """Direct vs pipeline vs blocking side by side: output tokens/s and TTFT p50 per level."""
    if summary is None or len(summary) == 0:
        raise ValueError("nothing to plot: the summary is empty")
    data, x_title = _with_levels(summary.sort_values(["max_tokens", "concurrency"]))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("output tokens/s (higher is better)",
                                                        "TTFT p50, ms (lower is better)"))
    for i, (endpoint, group) in enumerate(data.groupby("endpoint", sort=False)):
        color = _color(i)
        fig.add_trace(go.Bar(x=group["_x"], y=group["output_tokens_per_s"], name=str(endpoint),
                             legendgroup=str(endpoint), marker_color=color), row=1, col=1)
        fig.add_trace(go.Bar(x=group["_x"], y=group["ttft_p50_ms"], name=str(endpoint), legendgroup=str(endpoint),
                             marker_color=color, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text=x_title, type="category")
    fig.update_layout(title="Same requests, three endpoints", barmode="group", template=_TEMPLATE,
                      legend_title_text="endpoint")
    return fig


def head_to_head(results: pd.DataFrame) -> go.Figure:
    """The kit against ``vllm serve`` (rows of :class:`kit.perf.head_to_head.ServeResult`).

    Three panels per concurrency level: output tokens/s, TTFT p50 and ITL p50, one bar per
    target; the TTFT/ITL bars carry their p99 as an error bar's upper end.
    """
    if results is None or len(results) == 0:
        raise ValueError("nothing to plot: no head-to-head results")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("output tokens/s (higher is better)",
                                                        "TTFT p50, ms (bar to p99)", "ITL p50, ms (bar to p99)"))
    for i, (target, group) in enumerate(results.sort_values("concurrency").groupby("target", sort=False)):
        x = group["concurrency"].astype(str)
        color = _color(i)
        fig.add_trace(go.Bar(x=x, y=group["output_tokens_per_s"], name=str(target), legendgroup=str(target),
                             marker_color=color), row=1, col=1)
        for col, metric in ((2, "ttft"), (3, "itl")):
            p50, p99 = group[f"{metric}_p50_ms"], group[f"{metric}_p99_ms"]
            fig.add_trace(go.Bar(x=x, y=p50, name=str(target), legendgroup=str(target), marker_color=color,
                                 showlegend=False, error_y={"type": "data", "symmetric": False,
                                                            "array": (p99 - p50).clip(lower=0), "arrayminus": 0 * p50}),
                          row=1, col=col)
    fig.update_xaxes(title_text="concurrency", type="category")
    fig.update_layout(title="The kit's OpenAI API against vllm serve (vllm bench serve)", barmode="group",
                      template=_TEMPLATE, legend_title_text="target")
    return fig


def precision_ratios(base: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Output tokens/s of two sweeps (e.g. bf16 and FP8) at the levels both measured.

    Columns ``endpoint, concurrency, max_tokens, base, other, ratio`` (``ratio`` = other ÷ base),
    sorted by endpoint, max_tokens and concurrency; empty when they share no level.
    """
    keys = ["endpoint", "concurrency", "max_tokens"]
    joined = base[[*keys, "output_tokens_per_s"]].merge(other[[*keys, "output_tokens_per_s"]], on=keys,
                                                       suffixes=("_base", "_other"))
    joined = joined.rename(columns={"output_tokens_per_s_base": "base", "output_tokens_per_s_other": "other"})
    return joined.assign(ratio=joined["other"] / joined["base"]).sort_values(["endpoint", "max_tokens", "concurrency"],
                                                                             ignore_index=True)


def precision_comparison(base: pd.DataFrame, other: pd.DataFrame, names: tuple[str, str] = ("bf16", "FP8")) -> go.Figure:
    """Two sweeps of the same endpoints at the same levels, e.g. bf16 against FP8 weights.

    One bar per endpoint and precision at each shared concurrency · max_tokens level (output
    tokens/s), and the ratio other ÷ base as lines on a second panel.
    """
    ratios = precision_ratios(base, other)
    if ratios.empty:
        raise ValueError("nothing to plot: the two sweeps share no endpoint, concurrency and max_tokens")
    ratios, x_title = _with_levels(ratios)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("output tokens/s", f"{names[1]} ÷ {names[0]}"))
    for i, (endpoint, group) in enumerate(ratios.groupby("endpoint", sort=False)):
        color = _color(i)
        for column, name, pattern in (("base", names[0], ""), ("other", names[1], "/")):
            fig.add_trace(go.Bar(x=group["_x"], y=group[column], name=f"{endpoint} {name}", marker_color=color,
                                 marker_pattern_shape=pattern), row=1, col=1)
        fig.add_trace(go.Scatter(x=group["_x"], y=group["ratio"], name=f"{endpoint} {names[1]} ÷ {names[0]}",
                                 mode="lines+markers", line={"color": color}), row=1, col=2)
    fig.update_xaxes(title_text=x_title, type="category")
    fig.update_layout(title=f"{names[0]} against {names[1]}, same endpoints and levels", barmode="group",
                      template=_TEMPLATE)
    return fig


def perf_analyzer_sweep(df: pd.DataFrame) -> go.Figure:
    """A perf_analyzer sweep: infer/s as bars, latency p50/p99 as lines on a second axis.

    The x axis is concurrency, or ``max_tokens`` when only that varies (a max_tokens sweep).
    """
    if df is None or len(df) == 0:
        raise ValueError("nothing to plot: no perf_analyzer rows")
    by_tokens = "max_tokens" in df and df["concurrency"].nunique() == 1 and df["max_tokens"].nunique() > 1
    x = "max_tokens" if by_tokens else "concurrency"
    first = "latency_measures" in df and (df["latency_measures"] == "first_response").all()
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    groups = df.groupby("model", sort=False) if "model" in df else [("perf_analyzer", df)]
    for i, (model, group) in enumerate(groups):
        group = group.sort_values(x)
        color = _color(i)
        fig.add_trace(go.Bar(x=group[x].astype(str), y=group["throughput_infer_s"], name=f"{model} infer/s",
                             marker_color=color, opacity=0.55), secondary_y=False)
        for column, dash in (("latency_p50_ms", "solid"), ("latency_p99_ms", "dot")):
            if column in group:
                fig.add_trace(go.Scatter(x=group[x].astype(str), y=group[column], mode="lines+markers",
                                         name=f"{model} {column.split('_')[1]} latency",
                                         line=dict(color=color, dash=dash)), secondary_y=True)
    what = "time to first response" if first else "request latency"
    fig.update_layout(title=f"perf_analyzer: throughput and {what}", template=_TEMPLATE, barmode="group")
    fig.update_xaxes(title_text="max_tokens" if by_tokens else "concurrent requests", type="category")
    fig.update_yaxes(title_text="infer/s", secondary_y=False)
    fig.update_yaxes(title_text=f"{what}, ms", secondary_y=True)
    return fig


# --------------------------------------------------------------------------- export


def to_html(*figures: go.Figure, title: str = "Performance") -> str:
    """One self-contained HTML page holding ``figures``; plotly.js is written inline, once."""
    if not figures:
        raise ValueError("to_html needs at least one figure")
    from plotly.offline import get_plotlyjs

    divs = "\n".join(fig.to_html(full_html=False, include_plotlyjs=False) for fig in figures)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html_lib.escape(title)}</title>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n"
        "</head>\n<body>\n" + divs + "\n</body>\n</html>\n"
    )


__all__ = [
    "SEED_CONCURRENCY", "SEED_LABEL", "SEED_MAX_TOKENS", "endpoints_comparison", "itl_distribution",
    "latency_vs_concurrency", "latency_vs_max_tokens", "perf_analyzer_sweep", "throughput_vs_concurrency",
    "to_html", "ttft_distribution",
]
