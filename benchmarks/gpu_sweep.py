"""The GPU sweep behind ``benchmarks/results/<machine>/``: direct vs pipeline vs blocking.

Direct (``llama3-8b-instruct``) and the guarded pipeline (``llama_bls_ensemble``)
get the same chat-formatted requests at every concurrency and max_tokens; the
blocking pipeline (the seed's one-request-at-a-time behaviour) only at low
concurrency, since it serves requests one after the other. Output lengths are
fixed with ``ignore_eos``. Run against a server started with
``python -m kit serve --params params/gpu-bench.yaml --detach``::

    python benchmarks/gpu_sweep.py --out benchmarks/results/h100 --max-tokens 50,300
    python benchmarks/gpu_sweep.py --out benchmarks/results/h100 --max-tokens 600 --append
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.detached import read_state, status
from kit.exceptions import KitError, ServerError, exit_with
from kit.perf import load
from kit.perf.prompts import default_prompts


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grpc-url", default=None, help="default: the detached server")
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=ints, default=ints("1,2,4,8,16,32,64,128,256"))
    p.add_argument("--max-tokens", type=ints, default=ints("50,300,600"))
    p.add_argument("--blocking-concurrency", type=ints, default=ints("1,2,4,8"))
    p.add_argument("--rounds", type=int, default=2, help="requests per level = rounds × concurrency (at least 4)")
    p.add_argument("--turns", type=int, default=1,
                   help="split each level into this many slices and let direct and pipeline take turns slice by "
                        "slice (a passing disturbance then hits both alike; per-turn ratios from requests_*.csv)")
    p.add_argument("--tokenizer", default=None, help="model folder whose chat template formats the prompts")
    p.add_argument("--endpoints", default="direct,pipeline", help="which of direct,pipeline to sweep")
    p.add_argument("--append", action="store_true", help="add to an existing sweep.csv instead of replacing it")
    p.add_argument("--streams-per-process", type=int, default=32,
                   help="client processes per level = concurrency / this (0: one process for every level)")
    p.add_argument("--max-processes", type=int, default=8)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take before it counts as an error")
    args = p.parse_args()

    state = read_state()
    if not args.grpc_url and not state:
        raise ServerError("no detached server: start one (`python -m kit serve --params params/gpu-bench.yaml "
                          "--detach`) or pass --grpc-url")
    grpc_url = args.grpc_url or state.endpoints.grpc_address
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = default_prompts(max(args.concurrency) * args.rounds, args.tokenizer)
    started = time.monotonic()
    frames, requests = [], []
    per_level = lambda label, c: max(4, args.rounds * c)  # noqa: E731

    def server_ok(max_tokens: int, concurrency: int) -> bool:
        """Stop at the first level the server cannot serve whole (a dead stub fails or stalls requests)."""
        if args.grpc_url:
            return True  # not the detached server: nothing to ask
        report = status()
        if not report.ready:
            print(f"stopping before max_tokens={max_tokens} concurrency={concurrency}: {report.message}",
                  flush=True)
        return report.ready

    common = dict(max_tokens_list=args.max_tokens, prompts=prompts, progress=False, timeout_s=args.timeout,
                  before_level=server_ok)
    chosen = {k: v for k, v in {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL}.items() if k in args.endpoints}
    if chosen:
        both_requests, both = load.sweep(grpc_url, chosen, concurrencies=args.concurrency,
                                         requests_per_level=per_level, warmup=16, rounds=args.turns,
                                         streams_per_process=args.streams_per_process,
                                         max_processes=args.max_processes, **common)
        frames.append(both)
        requests.append(both_requests)
    if args.blocking_concurrency:
        blocking_requests, blocking = load.sweep(grpc_url, {"blocking": BLOCKING_MODEL},
                                                 concurrencies=args.blocking_concurrency,
                                                 requests_per_level=lambda label, c: max(2, c), **common)
        frames.append(blocking)
        requests.append(blocking_requests)
    summary = pd.concat(frames, ignore_index=True)
    per_request = pd.concat(requests, ignore_index=True)
    failed = per_request[per_request["error"].fillna("") != ""]
    if len(failed):
        print("errors:", failed.groupby(["endpoint", "error"]).size().to_string())
    per_request.to_csv(out / f"requests_{'_'.join(map(str, args.max_tokens))}.csv", index=False, float_format="%.5g")
    path = out / "sweep.csv"
    if args.append and path.exists():
        summary = pd.concat([pd.read_csv(path), summary], ignore_index=True)
    summary = summary.sort_values(["max_tokens", "endpoint", "concurrency"]).reset_index(drop=True)
    summary[load.SWEEP_COLUMNS].to_csv(path, index=False, float_format="%.4g")
    summary.to_csv(out / "sweep_full.csv", index=False, float_format="%.4g")
    print(summary[load.SWEEP_COLUMNS].to_string(index=False))
    print(f"sweep done in {time.monotonic() - started:.0f}s -> {path}")


if __name__ == "__main__":
    try:
        main()
    except KitError as exc:
        sys.exit(exit_with(exc))
