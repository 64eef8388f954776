"""The statistics of a load run: one summary row per endpoint × concurrency × max_tokens.

:mod:`kit.perf.load` records every request (``start_s``, ``ttft_s``, ``latency_s``,
``output_tokens``, ``chunks``, ``responses``, ``error``); :func:`summarize` turns those
rows into output tokens/s (all output tokens of the level ÷ its wall time, first start to
last end), requests/s, TTFT percentiles, inter-token latency
``(latency − TTFT) / (output_tokens − 1)`` and latency percentiles. Failed requests count
in ``errors`` and in the wall time, not in the percentiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SWEEP_COLUMNS = [
    "endpoint", "concurrency", "max_tokens", "requests", "output_tokens_per_s",
    "ttft_p50_ms", "itl_mean_ms", "latency_p50_s", "errors", "responses_per_request",
]
EXTRA_SUMMARY_COLUMNS = [
    "model", "requests_per_s", "ttft_p90_ms", "ttft_p99_ms", "itl_p50_ms", "latency_p90_s",
    "latency_p99_s", "wall_s", "output_tokens", "chunks_mean",
]


def _succeeded(frame: pd.DataFrame) -> pd.Series:
    """Rows without an error (an empty message reads back from CSV as NaN)."""
    errors = frame["error"]
    return errors.isna() | (errors.astype(str).str.strip() == "")


def inter_token_latency_s(per_request: pd.DataFrame) -> pd.Series:
    """Per request ``(latency − TTFT) / (output_tokens − 1)``; NaN with fewer than two tokens."""
    tokens = per_request["output_tokens"].astype(float)
    spread = per_request["latency_s"] - per_request["ttft_s"]
    return (spread / (tokens - 1)).where(tokens > 1)


def _pct(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(per_request: pd.DataFrame) -> pd.DataFrame:
    """One row per endpoint × concurrency × max_tokens, :data:`SWEEP_COLUMNS` first."""
    if per_request is None or per_request.empty:
        return pd.DataFrame(columns=SWEEP_COLUMNS + EXTRA_SUMMARY_COLUMNS)
    frame = per_request.copy()
    frame["_ok"] = _succeeded(frame)
    frame["_itl_s"] = inter_token_latency_s(frame)
    endpoints = list(dict.fromkeys(frame["endpoint"]))  # keep the order they were measured in
    rows = []
    for (endpoint, concurrency, max_tokens), group in frame.groupby(["endpoint", "concurrency", "max_tokens"],
                                                                     sort=False):
        ok = group[group["_ok"]]
        wall = float((group["start_s"] + group["latency_s"]).max() - group["start_s"].min())
        tokens = float(ok["output_tokens"].sum())
        rows.append({
            "endpoint": endpoint,
            "concurrency": int(concurrency),
            "max_tokens": int(max_tokens),
            "requests": int(len(group)),
            "output_tokens_per_s": tokens / wall if wall > 0 else float("nan"),
            "ttft_p50_ms": _pct(ok["ttft_s"], 50) * 1e3,
            "itl_mean_ms": float(ok["_itl_s"].mean()) * 1e3 if ok["_itl_s"].notna().any() else float("nan"),
            "latency_p50_s": _pct(ok["latency_s"], 50),
            "errors": int((~group["_ok"]).sum()),
            # streamed responses per request: ~max_tokens when every token travels alone, fewer
            # when the backend coalesces tokens that piled up while a send was in flight
            "responses_per_request": float(ok["responses"].mean()) if len(ok) else float("nan"),
            "model": group["model"].iloc[0] if "model" in group else endpoint,
            "requests_per_s": len(ok) / wall if wall > 0 else float("nan"),
            "ttft_p90_ms": _pct(ok["ttft_s"], 90) * 1e3,
            "ttft_p99_ms": _pct(ok["ttft_s"], 99) * 1e3,
            "itl_p50_ms": _pct(ok["_itl_s"], 50) * 1e3,
            "latency_p90_s": _pct(ok["latency_s"], 90),
            "latency_p99_s": _pct(ok["latency_s"], 99),
            "wall_s": wall,
            "output_tokens": int(tokens),
            "chunks_mean": float(ok["chunks"].mean()) if len(ok) else float("nan"),
        })
    summary = pd.DataFrame(rows)
    summary["_order"] = summary["endpoint"].map({e: i for i, e in enumerate(endpoints)})
    summary = summary.sort_values(["max_tokens", "concurrency", "_order"]).drop(columns="_order")
    return summary[SWEEP_COLUMNS + EXTRA_SUMMARY_COLUMNS].reset_index(drop=True)
