"""``python -m kit bench``: the same requests direct, through the pipeline and through the blocking pipeline.

One run, one server; at every concurrency level the endpoints take turns in slices of
requests, so a busy neighbour on a shared machine disturbs them alike:

* ``direct``   — ``llama3-8b-instruct``, the bare vLLM model;
* ``pipeline`` — ``llama_bls_ensemble``, input guard + LLM over asynchronous BLS + streaming censor;
* ``blocking`` — ``llama_bls_blocking``, the same pipeline serving one request at a time, as the
  original showcase did (it gets ``concurrency`` requests per level, not more: it is slow on purpose).

The table (:data:`kit.perf.load.SWEEP_COLUMNS`) is followed by the guard benchmark's speed-up,
the guard's cost on the server (its counters on Triton's metrics port, read before and after),
the project's goals (met or not) and, last, one line per headline ratio (:class:`kit.perf.headline.Ratio`).
``sweep.csv``, ``requests.csv`` and ``summary.json`` are written to ``--out``.

The server: ``--grpc-url`` if given, else the detached one (``python -m kit serve --detach``),
else the bench starts the default CPU deployment itself (or ``--params``'s) and stops it at the end.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kit import metrics
from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.endpoints import to_grpc_address
from kit.perf import load
from kit.perf.headline import goals, median_ratios
from kit.perf.prompts import default_prompts

ENDPOINTS = {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL, "blocking": BLOCKING_MODEL}
DEFAULT_CONCURRENCY = (1, 8, 48)
DEFAULT_MAX_TOKENS = 64
QUICK_MAX_TOKENS = 32
WARMUP = 2  # requests per endpoint before the measured levels (not measured)


def default_requests(concurrency: int, quick: bool = False) -> int:
    """Requests per endpoint and level: a few times the concurrency, never fewer than 16 (32 without --quick)."""
    return max(16 if quick else 32, (3 if quick else 4) * concurrency)


@dataclass(frozen=True)
class BenchSettings:
    """One ``kit bench`` run (the CLI's options, parsed): levels, budget, server, extras.

    ``concurrency`` and ``max_tokens`` default to :data:`DEFAULT_CONCURRENCY` and
    :data:`DEFAULT_MAX_TOKENS` (:data:`QUICK_MAX_TOKENS` when ``quick``);
    ``requests`` (per endpoint and level) to :func:`default_requests`.
    """

    concurrency: tuple[int, ...] = ()
    max_tokens: int | None = None
    requests: int | None = None
    quick: bool = False
    streams_per_process: int | None = None
    """One client process per this many streams; None: one process for every level."""
    out: Path | None = None
    """Results folder; None: ``reports/bench/<timestamp>``."""
    params: str | None = None
    """YAML parameters of the deployment to start when no server is running."""
    grpc_url: str | None = None
    """Measure this running server instead of the detached one."""
    guard_bench: bool = True
    perf_analyzer: bool = False
    progress: bool = True
    repeats: int = 3
    """Whole comparisons run back to back; the ratios are their medians, with the spread (min–max)."""

    def __post_init__(self):
        object.__setattr__(self, "concurrency", tuple(sorted(set(self.concurrency or DEFAULT_CONCURRENCY))))
        if self.max_tokens is None:
            object.__setattr__(self, "max_tokens", QUICK_MAX_TOKENS if self.quick else DEFAULT_MAX_TOKENS)
        object.__setattr__(self, "streams_per_process", self.streams_per_process or None)
        if self.repeats < 1:
            raise ValueError(f"repeats must be ≥ 1, got {self.repeats}")

    def requests_at(self, concurrency: int) -> int:
        """Requests per endpoint at one concurrency level."""
        return self.requests or default_requests(concurrency, self.quick)

    def record(self) -> dict[str, Any]:
        """The settings as written to ``summary.json``."""
        return {"concurrency": list(self.concurrency), "max_tokens": self.max_tokens, "requests": self.requests,
                "quick": self.quick, "streams_per_process": self.streams_per_process, "repeats": self.repeats}


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
    warmup: int = WARMUP,
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
        """Requests for one endpoint at one level: the blocking pipeline gets about ``concurrency``."""
        n = requests(concurrency) if callable(requests) else int(requests)
        return min(n, max(2, concurrency)) if label == "blocking" else n

    return load.sweep(grpc_url, endpoints, concurrencies=concurrencies, max_tokens_list=[max_tokens],
                      requests_per_level=count, prompts=prompts, progress=progress, warmup=warmup,
                      rounds=rounds, streams_per_process=streams_per_process)


# --------------------------------------------------------------------------- the server


def _served(grpc_url: str) -> set[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(to_grpc_address(grpc_url))
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

        client = grpcclient.InferenceServerClient(to_grpc_address(grpc_url))
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

    def __init__(self, settings: BenchSettings):
        from kit import detached
        from kit import server as srv

        self.server = None
        self.metrics_url: str | None = None  # unknown for a server given by its gRPC address
        if settings.grpc_url:
            self.grpc_url, self.source = settings.grpc_url, f"given ({settings.grpc_url})"
            return
        state = detached.read_state()
        if state and detached.status(state).ready:
            self.grpc_url, self.source = state.endpoints.grpc_address, f"detached server (pid {state.pid})"
            self.metrics_url = state.endpoints.metrics_url
            if settings.params:
                print(f"note: using the running detached server; --params {settings.params} is not applied to it",
                      file=sys.stderr)
            return
        from kit import params as kit_params
        from kit.deployment import ensure_repository

        params = kit_params.load(settings.params)
        repo = ensure_repository(params)
        print(f"starting a server for {repo} (stopped when the bench ends)", file=sys.stderr)
        self.server = srv.Server(repo)
        self.server.start()
        self.grpc_url, self.source = self.server.endpoints.grpc_address, f"started by the bench ({repo})"
        self.metrics_url = self.server.endpoints.metrics_url

    def close(self) -> None:
        """Stop the server the bench started (if it started one)."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def _guard_counters(metrics_url: str | None) -> dict[str, float] | None:
    """The pipeline's guard counters (:data:`kit.metrics.GUARD_COUNTERS`) on the metrics port; None when unreadable."""
    from kit.exceptions import ServerError

    if not metrics_url:
        return None
    try:
        return metrics.totals(metrics.scrape(metrics_url), metrics.GUARD_COUNTERS, model=PIPELINE_MODEL)
    except ServerError:
        return None


def guard_cost(before: dict[str, float] | None, after: dict[str, float] | None, requests: int) -> dict[str, float] | None:
    """The guard's work during the run, from its server-side counters: totals and µs per pipeline request."""
    if before is None or after is None or requests < 1:
        return None
    delta = {name: after[name] - before[name] for name in metrics.GUARD_COUNTERS}
    return {**delta, "guard_us_per_request": delta["kit_guard_time_us_total"] / requests}


# --------------------------------------------------------------------------- the command


def _print_table(summary: pd.DataFrame) -> None:
    columns = load.SWEEP_COLUMNS + ["requests_per_s", "latency_p99_s"]
    table = summary[columns].copy()
    formats = {"output_tokens_per_s": "{:.1f}", "ttft_p50_ms": "{:.1f}", "itl_mean_ms": "{:.2f}",
               "latency_p50_s": "{:.3f}", "requests_per_s": "{:.2f}", "latency_p99_s": "{:.3f}"}
    for column, fmt in formats.items():
        table[column] = table[column].map(lambda v, f=fmt: "nan" if pd.isna(v) else f.format(v))
    print(table.to_string(index=False))


def _perf_analyzer(grpc_url: str, settings: BenchSettings, prompts: Sequence[str], out: Path) -> dict[str, Any]:
    from kit.exceptions import KitError
    from kit.perf import perf_analyzer as pa

    quick = settings.quick
    try:
        frame = pa.run(grpc_url, PIPELINE_MODEL, concurrency=list(settings.concurrency),
                       max_tokens=settings.max_tokens, prompts=prompts, out_dir=out / "perf_analyzer",
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


def main(settings: BenchSettings) -> int:
    """Run the bench: measure, print the table, the goals and the ratios, write the results; return 0, or 1
    when a request failed or perf_analyzer produced nothing. Raises :class:`~kit.exceptions.ServerError`
    when the server does not serve the models to compare."""
    started = time.monotonic()
    if settings.out:
        out = Path(settings.out)
    else:
        from kit.weights import project_root

        out = project_root() / "reports" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    quick = settings.quick
    per_level = settings.requests_at

    target = _Target(settings)
    rc = 0
    pa_result: dict[str, Any] | None = None
    guard_counted: dict[str, float] | None = None
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
        prompts = default_prompts(max(per_level(c) for c in settings.concurrency), tokenizer)
        print(f"server: {target.source}; concurrency {list(settings.concurrency)}, max_tokens {settings.max_tokens}, "
              f"requests per level {'/'.join(str(per_level(c)) for c in settings.concurrency)}"
              + (" (blocking: = concurrency)" if blocking else ""))
        counters_before = _guard_counters(target.metrics_url)
        frames, summaries = [], []
        for repeat in range(settings.repeats):  # whole comparisons back to back: the ratios' spread
            frame, summary = compare(target.grpc_url, concurrencies=settings.concurrency,
                                     max_tokens=settings.max_tokens, requests=per_level, prompts=prompts,
                                     blocking=blocking, progress=settings.progress,
                                     streams_per_process=settings.streams_per_process,
                                     warmup=WARMUP if repeat == 0 else 0)
            frames.append(frame.assign(repeat=repeat))
            summaries.append(summary)
        per_request = pd.concat(frames, ignore_index=True)
        summary = load.summarize(per_request)  # every repeat's requests, for the table and the files
        # the counters also count compare()'s warm-up requests
        pipeline_requests = int(summary.loc[summary["endpoint"] == "pipeline", "requests"].sum()) + WARMUP
        guard_counted = guard_cost(counters_before, _guard_counters(target.metrics_url), pipeline_requests)
        load.save(per_request, summary, out)
        print()
        _print_table(summary)
        if settings.perf_analyzer:
            pa_result = _perf_analyzer(target.grpc_url, settings, prompts, out)
            rc = 1 if "error" in pa_result else rc
    finally:
        target.close()

    guard: dict[str, Any] | None = None
    if settings.guard_bench:
        from kit.guardrails import bench as guard_bench

        guard = guard_bench.run(size_kb=10 if quick else 30, repeat=1 if quick else 3)
        print(f"\nguard/better_profanity speed-up: {guard['speedup']:.0f}x "
              f"({guard['text_chars'] // 1024} KB: better_profanity {guard['better_profanity_s'] * 1e3:.0f} ms, "
              f"guard {guard['guard_s'] * 1e3:.1f} ms)")
    if guard_counted:
        print(f"guard on the server: {guard_counted['guard_us_per_request']:.0f} µs per pipeline request "
              f"({guard_counted['kit_guard_prompts_blocked_total']:.0f} prompts refused, "
              f"{guard_counted['kit_guard_words_censored_total']:.0f} words censored; Triton's metrics)")

    found = median_ratios(summaries)
    checks = goals(summary, found)
    errors = int(summary["errors"].sum())
    report = {
        "settings": settings.record(), "server": target.source, "seconds": round(time.monotonic() - started, 1),
        "errors": errors, "ratios": {r.label: r.value for r in found},
        "ratio_spread": {r.label: [r.low, r.high] for r in found if not math.isnan(r.low)},
        "goals": checks, "guard_bench": guard,
        "guard_metrics": guard_counted,
        "perf_analyzer": pa_result,
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
    for ratio in found:
        print(ratio.text())
    return rc


__all__ = ["ENDPOINTS", "BenchSettings", "compare", "main"]
