"""The response pump in miniature, on the CPU: inline sends (the old path) against the pump.

On an H200 the vLLM backend lost two thirds of its output above 128 streams because the engine's
event loop made a blocking round trip to the server for every response (see
``kit/triton_models/responses.py``). This benchmark shows the mechanism on the tiny CPU model:
two servers in turn, one with ``KIT_RESPONSE_SENDERS=0`` (each output sent inline, on the loop,
one response per output) and one with the default pump, the same requests to each:

* direct and pipeline streams (concurrency 64 × 128 tokens): responses per request and output tok/s;
* non-streaming requests (48 × 256 tokens) direct and through the pipeline, which now asks the LLM
  for one answer instead of a stream of deltas.

Each server gets ``--repeats`` rounds with the endpoints interleaved; the table gives the median
of the rounds and their spread (min–max), and the ratios pump / inline are of the medians. The
count of responses is exact; the rates on a 2-core machine are noisy (read the spread)::

    python benchmarks/response_pump.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import params as kit_params
from kit import repository
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.perf import load
from kit.perf.prompts import default_prompts
from kit.server import Server

LEVELS = [  # label, model, stream, concurrency, max_tokens
    ("direct stream", LLM_MODEL, True, 64, 128),
    ("pipeline stream", PIPELINE_MODEL, True, 64, 128),
    ("direct no-stream", LLM_MODEL, False, 48, 256),
    ("pipeline no-stream", PIPELINE_MODEL, False, 48, 256),
]


def measure(grpc_url: str, repeats: int, prompts: list[str]) -> pd.DataFrame:
    rows = []
    for _label, model, stream, _concurrency, _max_tokens in LEVELS:  # warm every path once
        load.run_level(grpc_url, model, concurrency=4, requests=4, max_tokens=8, prompts=prompts,
                       progress=False, stream=stream)
    for repeat in range(repeats):
        for label, model, stream, concurrency, max_tokens in LEVELS:
            frame = load.run_level(grpc_url, model, concurrency=concurrency, requests=concurrency,
                                   max_tokens=max_tokens, prompts=prompts, progress=False, stream=stream,
                                   endpoint=label)
            summary = load.summarize(frame).iloc[0]
            rows.append({"endpoint": label, "repeat": repeat, "tok_s": summary["output_tokens_per_s"],
                         "responses_per_request": summary["responses_per_request"],
                         "errors": summary["errors"]})
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from kit.weights import build_tiny_model

    build_tiny_model()
    config = kit_params.deployment(kit_params.load(None))
    prompts = default_prompts(64, config.model)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = repository.build(config, Path(tmp) / "repo")
        for mode, senders in (("inline", "0"), ("pump", os.environ.get("KIT_RESPONSE_SENDERS", "2"))):
            print(f"{mode}: starting a server with KIT_RESPONSE_SENDERS={senders}", flush=True)
            with Server(repo, env={"KIT_RESPONSE_SENDERS": senders}) as server:
                results[mode] = measure(server.endpoints.grpc_address, args.repeats, prompts)
    table = []
    for label, *_ in LEVELS:
        row = {"endpoint": label}
        for mode, frame in results.items():
            mine = frame[frame["endpoint"] == label]
            row[f"{mode} tok/s"] = f"{mine['tok_s'].median():.0f} ({mine['tok_s'].min():.0f}–{mine['tok_s'].max():.0f})"
            row[f"{mode} responses/req"] = round(mine["responses_per_request"].median(), 1)
            row[f"{mode} errors"] = int(mine["errors"].sum())
        inline = results["inline"][results["inline"]["endpoint"] == label]["tok_s"].median()
        pump = results["pump"][results["pump"]["endpoint"] == label]["tok_s"].median()
        row["pump/inline tok/s"] = round(pump / inline, 2)
        table.append(row)
    print(pd.DataFrame(table).to_string(index=False))


if __name__ == "__main__":
    main()
