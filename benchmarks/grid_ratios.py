"""Pipeline ÷ direct for every cell of a saved GPU sweep, and for each turn within a cell.

``gpu_sweep.py --turns N`` splits every level into N slices and lets direct and pipeline take
turns slice by slice, so one cell yields N ratios measured side by side. This script reads a
results folder's per-request CSV files (``requests*.csv``) and prints, per max_tokens ×
concurrency, the whole cell's output tok/s for both endpoints, their ratio, the ratio of each
turn, the TTFT p50 of both and the streamed responses per request; ``--csv`` saves the table::

    python benchmarks/grid_ratios.py benchmarks/results/h200 --turns 50=2,300=2,600=1 \\
        --csv benchmarks/results/h200/grid_ratios.csv

The slices are cut as :func:`kit.perf.load.sweep` cuts them (:func:`kit.perf.load.slice_bounds`).
Give each max_tokens the turns it was measured with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.perf.load import slice_bounds
from kit.perf.stats import summarize


def turns_by_length(text: str) -> dict[int, int]:
    """``"50=2,300=2,600=1"`` → ``{50: 2, 300: 2, 600: 1}``."""
    pairs = (item.split("=") for item in text.split(",") if item.strip())
    return {int(tokens): int(turns) for tokens, turns in pairs}


def cell_rows(per_request: pd.DataFrame, turns: dict[int, int], base: str = "direct",
              other: str = "pipeline") -> pd.DataFrame:
    """One row per max_tokens × concurrency measured for both endpoints (see the module docstring)."""
    both = per_request[per_request["endpoint"].isin([base, other])]
    rows = []
    for (max_tokens, concurrency), cell in both.groupby(["max_tokens", "concurrency"]):
        whole = summarize(cell).set_index("endpoint")
        if not {base, other} <= set(whole.index):
            continue
        n = int(cell.groupby("endpoint").size().max())
        turn_ratios = []
        for first, last in slice_bounds(n, int(concurrency), turns.get(int(max_tokens), 1)):
            part = summarize(cell[(cell["request"] >= first) & (cell["request"] < last)]).set_index("endpoint")
            turn_ratios.append(part.loc[other, "output_tokens_per_s"] / part.loc[base, "output_tokens_per_s"])
        rows.append({
            "max_tokens": int(max_tokens), "concurrency": int(concurrency),
            f"{base}_tok_s": whole.loc[base, "output_tokens_per_s"],
            f"{other}_tok_s": whole.loc[other, "output_tokens_per_s"],
            "ratio": whole.loc[other, "output_tokens_per_s"] / whole.loc[base, "output_tokens_per_s"],
            "turn_ratios": " ".join(f"{r:.3f}" for r in turn_ratios),
            f"{base}_ttft_p50_ms": whole.loc[base, "ttft_p50_ms"],
            f"{other}_ttft_p50_ms": whole.loc[other, "ttft_p50_ms"],
            "ttft_p50_diff_ms": whole.loc[other, "ttft_p50_ms"] - whole.loc[base, "ttft_p50_ms"],
            f"{base}_responses_per_request": whole.loc[base, "responses_per_request"],
            f"{other}_responses_per_request": whole.loc[other, "responses_per_request"],
            "errors": int(whole["errors"].sum()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a results folder holding requests*.csv")
    p.add_argument("--turns", type=turns_by_length, default={}, help="max_tokens=turns, comma-separated (default 1)")
    p.add_argument("--csv", default=None, help="also save the table here")
    args = p.parse_args()
    files = sorted(Path(args.folder).glob("requests*.csv"))
    if not files:
        sys.exit(f"no requests*.csv in {args.folder}: point at a folder gpu_sweep.py wrote")
    table = cell_rows(pd.concat([pd.read_csv(f) for f in files], ignore_index=True), args.turns)
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.4g")
    with pd.option_context("display.width", 220, "display.max_columns", None):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
