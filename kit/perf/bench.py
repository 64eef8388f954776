"""``python -m kit bench``: the same requests direct, through the pipeline and through the blocking pipeline.

One run, one server; at every concurrency level the endpoints take turns in slices of
requests, so a busy neighbour on a shared machine disturbs them alike:

* ``direct``   — ``llama3-8b-instruct``, the bare vLLM model;
* ``pipeline`` — ``llama_bls_ensemble``, input guard + LLM over asynchronous BLS + streaming censor;
* ``blocking`` — ``llama_bls_blocking``, the same pipeline serving one request at a time, as the
  original showcase did (it gets ``concurrency`` requests per level, not more: it is slow on purpose).

The table (:data:`kit.perf.load.SWEEP_COLUMNS`) is followed by the guard benchmark's speed-up,
the project's goals (met or not) and, last, one line per headline ratio. ``sweep.csv``,
``requests.csv`` and ``summary.json`` are written to ``--out``.

The server: ``--grpc-url`` if given, else the detached one (``python -m kit serve --detach``),
else the bench starts the default CPU deployment itself (or ``--params``'s) and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.perf import load

ENDPOINTS = {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL, "blocking": BLOCKING_MODEL}
DEFAULT_CONCURRENCY = (1, 8, 48)
DEFAULT_MAX_TOKENS = 64
QUICK_CONCURRENCY = (1, 8, 48)
QUICK_MAX_TOKENS = 32
GOAL_THROUGHPUT = 0.9  # pipeline ≥ 0.9 × direct output tokens/s
GOAL_TTFT_MS = 5.0  # pipeline TTFT p50 within 5 ms of direct
GOAL_BLOCKING = 0.5  # blocking well under 0.5 × direct at concurrency 8
GOAL_BLOCKING_CONCURRENCY = 8


def default_requests(concurrency: int, quick: bool = False) -> int:
    """Requests per endpoint and level: a few times the concurrency, never fewer than 16 (32 without --quick)."""
    return max(16 if quick else 32, (3 if quick else 4) * concurrency)


# --------------------------------------------------------------------------- measuring


def compare(
    grpc_url: str,
    *,
    concurrencies: Sequence[int],
    max_tokens: int,
    requests: int | Callable[[int], int],
    prompts: Sequence[str],
    blocking: bool = True,
    progress: bool = True,
    warmup: int = 2,
    rounds: int = 4,
    streams_per_process: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Direct vs pipeline (vs blocking) on the same requests; returns ``(per_request, summary)``.

    ``requests`` is a count per endpoint and level, or ``f(concurrency) -> count``. The
    blocking pipeline serves one request at a time, so it gets ``concurrency`` requests
    (at least 2, at most as many as the others). The endpoints take turns in ``rounds``
    slices per level, and ``streams_per_process`` spreads the clients over processes (see
    :func:`kit.perf.load.sweep`).
    """
    endpoints = {k: v for k, v in ENDPOINTS.items() if blocking or k != "blocking"}

    def count(label: str, concurrency: int) -> int:
        n = requests(concurrency) if callable(requests) else int(requests)
        return min(n, max(2, concurrency)) if label == "blocking" else n

    return load.sweep(grpc_url, endpoints, concurrencies=concurrencies, max_tokens_list=[max_tokens],
                      requests_per_level=count, prompts=prompts, progress=progress, warmup=warmup,
                      rounds=rounds, streams_per_process=streams_per_process)


def _row(summary: pd.DataFrame, endpoint: str, concurrency: int, max_tokens: int) -> pd.Series | None:
    rows = summary[(summary["endpoint"] == endpoint) & (summary["concurrency"] == concurrency)
                   & (summary["max_tokens"] == max_tokens)]
    return None if rows.empty else rows.iloc[0]


def ratios(summary: pd.DataFrame) -> dict[str, float]:
    """Headline ratios per level: pipeline/direct and blocking/direct output tokens/s, TTFT p50 difference (ms)."""
    out: dict[str, float] = {}
    several = summary["max_tokens"].nunique() > 1
    for max_tokens in sorted(summary["max_tokens"].unique()):
        suffix = f" (max_tokens {max_tokens})" if several else ""
        for concurrency in sorted(summary[summary["max_tokens"] == max_tokens]["concurrency"].unique()):
            direct = _row(summary, "direct", concurrency, max_tokens)
            if direct is None:
                continue
            where = f"at concurrency {concurrency}{suffix}"
            pipeline = _row(summary, "pipeline", concurrency, max_tokens)
            blocking = _row(summary, "blocking", concurrency, max_tokens)
            if pipeline is not None:
                out[f"pipeline/direct throughput {where}"] = _div(pipeline["output_tokens_per_s"],
                                                                   direct["output_tokens_per_s"])
                out[f"pipeline-direct TTFT p50 {where}"] = float(pipeline["ttft_p50_ms"] - direct["ttft_p50_ms"])
            if blocking is not None:
                out[f"blocking/direct throughput {where}"] = _div(blocking["output_tokens_per_s"],
                                                                   direct["output_tokens_per_s"])
                if pipeline is not None:
                    out[f"pipeline/blocking throughput {where}"] = _div(pipeline["output_tokens_per_s"],
                                                                         blocking["output_tokens_per_s"])
    return out


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b and not math.isnan(float(b)) else float("nan")


def format_ratio(key: str, value: float) -> str:
    """``key: value`` as printed: ratios with two decimals, TTFT differences in signed ms."""
    if "TTFT" in key:
        return f"{key}: {value:+.1f} ms"
    return f"{key}: {value:.2f}"


def goals(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The project's performance goals, each with ``goal``, ``met`` and the figures behind it."""
    found = ratios(summary)
    out = []
    tput = {k: v for k, v in found.items() if k.startswith("pipeline/direct throughput")}
    if tput:
        worst = min(tput, key=tput.get)
        out.append({"goal": f"pipeline ≥ {GOAL_THROUGHPUT}× direct output tokens/s at every concurrency",
                    "met": all(v >= GOAL_THROUGHPUT for v in tput.values()),
                    "detail": f"lowest {tput[worst]:.2f} ({worst.split(' at ')[-1]})"})
    ttft = {k: v for k, v in found.items() if k.startswith("pipeline-direct TTFT")}
    if ttft:
        worst = max(ttft, key=lambda k: abs(ttft[k]))
        out.append({"goal": f"pipeline TTFT p50 within {GOAL_TTFT_MS:g} ms of direct at every concurrency",
                    "met": all(abs(v) <= GOAL_TTFT_MS for v in ttft.values()),
                    "detail": f"largest difference {ttft[worst]:+.1f} ms ({worst.split(' at ')[-1]})"})
    blocking = {k: v for k, v in found.items() if k.startswith("blocking/direct throughput")}
    if blocking:
        prefix = f"blocking/direct throughput at concurrency {GOAL_BLOCKING_CONCURRENCY}"
        at = [k for k in blocking if k == prefix or k.startswith(prefix + " ")]
        if at:
            value = blocking[at[0]]
            out.append({"goal": f"blocking < {GOAL_BLOCKING}× direct output tokens/s at concurrency "
                                f"{GOAL_BLOCKING_CONCURRENCY}",
                        "met": value < GOAL_BLOCKING, "detail": f"{value:.2f}"})
    return out


# --------------------------------------------------------------------------- the server


def _served(grpc_url: str) -> set[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url.removeprefix("grpc://"))
    try:
        return {name for name in ENDPOINTS.values() if _ready(client, name)}
    finally:
        client.close()


def _ready(client, name: str) -> bool:
    try:
        return bool(client.is_model_ready(name))
    except Exception:  # noqa: BLE001 - an unknown model is simply not served
        return False


def _tokenizer_path(grpc_url: str) -> str | None:
    """The pipeline's tokenizer folder, from its config (so prompts get the served chat template)."""
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(grpc_url.removeprefix("grpc://"))
        try:
            config = client.get_model_config(PIPELINE_MODEL, as_json=True)["config"]
        finally:
            client.close()
        path = config.get("parameters", {}).get("tokenizer", {}).get("string_value")
    except Exception:  # noqa: BLE001 - fall back to Llama-3's written-out format
        return None
    return path if path and Path(path).is_dir() else None


class _Target:
    """The server to measure: given, detached, or started here (and stopped by ``close``)."""

    def __init__(self, args):
        from kit import server as srv

        self.server = None
        if args.grpc_url:
            self.grpc_url, self.source = args.grpc_url, f"given ({args.grpc_url})"
            return
        state = srv.read_state()
        if state and srv.status(state).get("ready"):
            self.grpc_url, self.source = state["grpc_url"], f"detached server (pid {state['pid']})"
            if args.params:
                print(f"note: using the running detached server; --params {args.params} is not applied to it",
                      file=sys.stderr)
            return
        from kit import cli
        from kit import params as kit_params

        params = kit_params.load(args.params)
        repo = cli.ensure_repository(params)
        print(f"starting a server for {repo} (stopped when the bench ends)", file=sys.stderr)
        self.server = srv.Server(repo)
        self.server.start()
        self.grpc_url, self.source = self.server.endpoints.grpc_url, f"started by the bench ({repo})"

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


# --------------------------------------------------------------------------- the command


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,48, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sorted(set(values))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help=f"short run: max_tokens {QUICK_MAX_TOKENS}, fewer requests, smaller guard benchmark")
    parser.add_argument("--concurrency", type=_int_list, default=None,
                        help="concurrency levels, comma-separated (default 1,8,48)")
    parser.add_argument("--max-tokens", type=_positive, default=None,
                        help=f"tokens per request, fixed with ignore_eos (default {DEFAULT_MAX_TOKENS}, "
                             f"--quick {QUICK_MAX_TOKENS})")
    parser.add_argument("--requests", type=_positive, default=None,
                        help="requests per endpoint and level (default: max(32, 4 × concurrency), "
                             "--quick max(16, 3 × concurrency); the blocking pipeline gets as many as "
                             "the concurrency)")
    parser.add_argument("--out", default=None, help="results folder (default reports/bench/<timestamp>)")
    parser.add_argument("--params", default=None,
                        help="YAML parameters of the deployment to start when no server is running")
    parser.add_argument("--grpc-url", default=None, help="measure this running server (grpc://host:port)")
    parser.add_argument("--no-guard-bench", action="store_true", help="skip the guard vs better_profanity benchmark")
    parser.add_argument("--perf-analyzer", action="store_true",
                        help="also run one perf_analyzer concurrency sweep through the pipeline")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--vs-vllm-serve", action="store_true",
                        help="instead: `vllm serve` vs the kit's OpenAI service (bare LLM, guarded pipeline) on the "
                             "same model and engine arguments, measured by `vllm bench serve` (see "
                             "kit/perf/head_to_head.py); uses --params, --concurrency (default 1,4,16), "
                             "--max-tokens (default 32), --requests, --out")
    parser.add_argument("--openai-workers", type=_positive, default=1,
                        help="processes of the kit's OpenAI API with --vs-vllm-serve (default 1; e.g. 4 on a GPU "
                             "serving hundreds of streams)")
    parser.add_argument("--streams-per-process", type=int, default=0,
                        help="one client process per this many streams (default 0: one process; a GPU serving "
                             "hundreds of streams outruns one Python client, use e.g. 32)")


def _settings(args) -> dict[str, Any]:
    concurrency = args.concurrency or list(QUICK_CONCURRENCY if args.quick else DEFAULT_CONCURRENCY)
    max_tokens = args.max_tokens or (QUICK_MAX_TOKENS if args.quick else DEFAULT_MAX_TOKENS)
    return {"concurrency": concurrency, "max_tokens": max_tokens, "requests": args.requests, "quick": args.quick,
            "streams_per_process": args.streams_per_process or None}


def _print_table(summary: pd.DataFrame) -> None:
    columns = load.SWEEP_COLUMNS + ["requests_per_s", "latency_p99_s"]
    table = summary[columns].copy()
    formats = {"output_tokens_per_s": "{:.1f}", "ttft_p50_ms": "{:.1f}", "itl_mean_ms": "{:.2f}",
               "latency_p50_s": "{:.3f}", "requests_per_s": "{:.2f}", "latency_p99_s": "{:.3f}"}
    for column, fmt in formats.items():
        table[column] = table[column].map(lambda v, f=fmt: "nan" if pd.isna(v) else f.format(v))
    print(table.to_string(index=False))


def _perf_analyzer(grpc_url: str, settings: dict, prompts: Sequence[str], out: Path) -> dict[str, Any]:
    from kit.exceptions import KitError
    from kit.perf import perf_analyzer as pa

    quick = settings["quick"]
    try:
        frame = pa.run(grpc_url, PIPELINE_MODEL, concurrency=settings["concurrency"],
                       max_tokens=settings["max_tokens"], prompts=prompts, out_dir=out / "perf_analyzer",
                       measurement_interval_ms=2000 if quick else 5000, stability_percentage=50 if quick else 10,
                       max_trials=5 if quick else 10, prompt_is_formatted=True)
    except KitError as exc:
        print(f"perf_analyzer failed: {exc}")
        return {"error": str(exc)}
    frame.to_csv(out / "perf_analyzer.csv", index=False)
    shown = frame[["model", "concurrency", "max_tokens", "throughput_infer_s", "response_throughput_s",
                   "latency_p50_ms", "latency_p99_ms"]]
    print("\nperf_analyzer through the pipeline (latency = time to the first response):")
    print(shown.round(3).to_string(index=False))
    return {"rows": json.loads(frame.to_json(orient="records"))}


def main(args) -> int:
    if getattr(args, "vs_vllm_serve", False):
        from kit.perf import head_to_head

        return head_to_head.main(args)
    started = time.monotonic()
    settings = _settings(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.out:
        out = Path(args.out)
    else:
        from kit.models import project_root

        out = project_root() / "reports" / "bench" / stamp
    out.mkdir(parents=True, exist_ok=True)
    quick = settings["quick"]
    n_requests = settings["requests"]

    def per_level(concurrency: int) -> int:
        return n_requests or default_requests(concurrency, quick)

    target = _Target(args)
    rc = 0
    pa_result: dict[str, Any] | None = None
    try:
        served = _served(target.grpc_url)
        missing = [name for name in (LLM_MODEL, PIPELINE_MODEL) if name not in served]
        if missing:
            from kit.exceptions import ServerError

            raise ServerError(f"the server at {target.grpc_url} does not serve {missing}; "
                              "serve the kit's repository (`python -m kit serve --detach`)")
        blocking = BLOCKING_MODEL in served
        if not blocking:
            print(f"note: {BLOCKING_MODEL} is not served (deploy with blocking_variant: true to compare it)")
        tokenizer = _tokenizer_path(target.grpc_url)
        prompts = load.default_prompts(max(per_level(c) for c in settings["concurrency"]), tokenizer)
        print(f"server: {target.source}; concurrency {settings['concurrency']}, max_tokens {settings['max_tokens']}, "
              f"requests per level {'/'.join(str(per_level(c)) for c in settings['concurrency'])}"
              + (" (blocking: = concurrency)" if blocking else ""))
        per_request, summary = compare(target.grpc_url, concurrencies=settings["concurrency"],
                                       max_tokens=settings["max_tokens"], requests=per_level, prompts=prompts,
                                       blocking=blocking, progress=not args.no_progress,
                                       streams_per_process=settings["streams_per_process"])
        load.save(per_request, summary, out)
        print()
        _print_table(summary)
        if args.perf_analyzer:
            pa_result = _perf_analyzer(target.grpc_url, settings, prompts, out)
            rc = 1 if "error" in pa_result else rc
    finally:
        target.close()

    guard: dict[str, Any] | None = None
    if not args.no_guard_bench:
        from kit.guardrails import bench as guard_bench

        guard = guard_bench.run(size_kb=10 if quick else 30, repeat=1 if quick else 3)
        print(f"\nguard/better_profanity speed-up: {guard['speedup']:.0f}x "
              f"({guard['text_chars'] // 1024} KB: better_profanity {guard['better_profanity_s'] * 1e3:.0f} ms, "
              f"guard {guard['guard_s'] * 1e3:.1f} ms)")

    found = ratios(summary)
    checks = goals(summary)
    errors = int(summary["errors"].sum())
    report = {
        "settings": settings, "server": target.source, "seconds": round(time.monotonic() - started, 1),
        "errors": errors, "ratios": found, "goals": checks, "guard_bench": guard, "perf_analyzer": pa_result,
        "files": {"sweep": "sweep.csv", "requests": "requests.csv"},
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print()
    if errors:
        print(f"WARNING: {errors} request(s) failed; see {out / 'requests.csv'}")
        rc = 1
    for check in checks:
        print(f"goal {'met' if check['met'] else 'MISSED'}: {check['goal']} — {check['detail']}")
    print(f"results in {out} ({report['seconds']:.0f}s)")
    for key, value in found.items():
        print(format_ratio(key, value))
    return rc


__all__ = ["ENDPOINTS", "add_arguments", "compare", "format_ratio", "goals", "main", "ratios"]
