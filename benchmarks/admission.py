"""How long a new request waits for the vLLM model: Triton's own queue and ``execute`` time per request.

Triton hands a decoupled Python model one request per ``execute`` and waits for it to return before
it hands over the next, so when a wave of streams starts at once (a closed loop of equal requests,
as in every sweep of the kit) the last request of a wave waits about wave size × ``execute`` time in
Triton's queue before the engine even sees it. This runs the bare LLM closed loop at each
concurrency and reads Triton's cumulative counters for ``llama3-8b-instruct`` on the metrics port
(``nv_inference_queue_duration_us``, ``nv_inference_compute_infer_duration_us``,
``nv_inference_request_success``) before and after each level; ``--repeats`` runs the levels again,
round by round, to show the spread. Against a running server (``python -m kit serve --detach``)::

    python benchmarks/admission.py --concurrency 16,64 --max-tokens 16 --repeats 3

Output per level: requests, mean queue and ``execute`` ms per request, TTFT p50 ms, output tok/s.
On an H200 at 256 streams it read a 65 ms queue and 1.95 ms of ``execute`` per request, 58 % of it
waiting for the cancellation watcher's lock (``benchmarks/results/h200/admission/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import metrics
from kit.cli import int_list, positive_int
from kit.config import LLM_MODEL
from kit.detached import read_state
from kit.exceptions import KitError, ServerError, exit_with
from kit.perf import load
from kit.perf.prompts import default_prompts
from kit.perf.stats import summarize

COUNTERS = ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "nv_inference_request_success")


def counters(metrics_url: str) -> dict[str, float]:
    """Triton's cumulative counters of the vLLM model (µs, µs, requests)."""
    return metrics.totals(metrics.scrape(metrics_url), COUNTERS, model=LLM_MODEL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int_list, default=[16, 64], help="comma-separated stream counts")
    p.add_argument("--max-tokens", type=positive_int, default=16)
    p.add_argument("--rounds", type=positive_int, default=3, help="requests per level = rounds × concurrency")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--tokenizer", default=None, help="model folder whose chat template formats the prompts")
    args = p.parse_args()
    state = read_state()
    if state is None:
        raise ServerError("no detached server is running: start one with `python -m kit serve --detach`")
    levels = args.concurrency
    grpc, metrics_url = state.endpoints.grpc_address, state.endpoints.metrics_url
    prompts = default_prompts(max(levels) * args.rounds, args.tokenizer)
    load.run_level(grpc, LLM_MODEL, concurrency=min(4, max(levels)), requests=4, max_tokens=args.max_tokens,
                   prompts=prompts, progress=False)  # warm-up, not counted
    print(f"{LLM_MODEL}, {args.max_tokens} tokens, closed loop: per-request means from Triton's counters")
    print(f"{'repeat':>6} {'streams':>7} {'requests':>8} {'queue ms':>9} {'execute ms':>10} "
          f"{'TTFT p50 ms':>11} {'tok/s':>8} {'errors':>6}")
    for repeat in range(1, args.repeats + 1):
        for concurrency in levels:
            before = counters(metrics_url)
            rows = load.run_level(grpc, LLM_MODEL, concurrency=concurrency, requests=args.rounds * concurrency,
                                  max_tokens=args.max_tokens, prompts=prompts, progress=False)
            after = counters(metrics_url)
            queue_us, execute_us, done = (after[name] - before[name] for name in COUNTERS)
            row = summarize(rows).iloc[0]
            queue_ms, execute_ms = (us / done / 1000 if done else float("nan") for us in (queue_us, execute_us))
            print(f"{repeat:>6} {concurrency:>7} {int(done):>8} {queue_ms:>9.3f} {execute_ms:>10.3f} "
                  f"{row['ttft_p50_ms']:>11.1f} {row['output_tokens_per_s']:>8.0f} {int(row['errors']):>6}",
                  flush=True)


if __name__ == "__main__":
    try:
        main()
    except KitError as exc:
        exit_with(exc)
