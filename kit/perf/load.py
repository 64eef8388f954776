"""A token-level load generator: closed-loop streaming gRPC clients on asyncio loops.

``perf_analyzer`` counts requests; a chat user feels tokens. This module keeps exactly
``concurrency`` streaming requests in flight against any endpoint (the bare LLM, the
guarded pipeline, the blocking pipeline) until ``requests`` have completed. One Python
process reads a few thousand streamed responses a second at most, so with
``streams_per_process`` a level's streams are shared out over worker processes (each with
its own loop and connection) and the client never becomes the thing being measured.
Every request's record:

* ``start_s`` (since the level started), ``ttft_s`` (first response carrying text),
  ``latency_s`` (final response), ``chunks`` (responses with text), ``responses`` (all);
* ``output_tokens``: every request asks for ``ignore_eos``, so a request that succeeds
  generates exactly ``max_tokens`` tokens (chunks are counted too: a streamed response can
  hold more than one token, or none when a token ends mid-character);
* ``error``: the server's message, empty on success.

:func:`kit.perf.stats.summarize` turns those rows into one row per endpoint × concurrency ×
max_tokens (re-exported here with its columns, as :func:`sweep` returns it).

>>> per_request, summary = sweep(url, {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL},
...                              concurrencies=[1, 8], max_tokens_list=[64],
...                              requests_per_level=16, prompts=prompts.default_prompts(16))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import sys
import threading
import time
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from kit.client import delta_from_result, grpc_inputs, is_final, request_inputs
from kit.endpoints import to_grpc_address
from kit.exceptions import SetupError
from kit.perf.stats import EXTRA_SUMMARY_COLUMNS, SWEEP_COLUMNS, inter_token_latency_s, summarize

REQUEST_COLUMNS = [
    "endpoint", "model", "concurrency", "max_tokens", "request", "start_s", "ttft_s", "latency_s",
    "chunks", "responses", "output_tokens", "output_chars", "blocked", "error",
]
DEFAULT_TIMEOUT_S = 300.0
START_TOGETHER_TIMEOUT_S = 60.0
"""How long a client process waits for the level's other processes to be ready before it gives up."""
EMPTY_FINAL_PARAMETER = "triton_enable_empty_final_response"

# --------------------------------------------------------------------------- one level


async def _one_request(client, model: str, inputs: list, request_id: str, timeout_s: float) -> dict[str, Any]:
    """Send one streaming request and time its responses."""
    from tritonclient.utils import InferenceServerException

    async def single():
        yield {"model_name": model, "inputs": inputs, "request_id": request_id,
               "parameters": {EMPTY_FINAL_PARAMETER: True}}

    record: dict[str, Any] = {"chunks": 0, "responses": 0, "output_chars": 0, "blocked": False, "error": ""}
    marks: dict[str, float] = {}

    calls: list = []

    async def consume() -> None:
        call = client.stream_infer(single())
        calls.append(call)
        async for result, error in call:  # read to the stream's end: the server closes it after the final
            record["responses"] += 1
            if error is not None:
                record["error"] = error.message() or str(error)
                return
            if "final" in marks:
                continue
            delta = delta_from_result(result)
            text = delta.text if delta else ""
            if text:
                marks.setdefault("first", time.perf_counter())
                record["chunks"] += 1
                record["output_chars"] += len(text)
            record["blocked"] = record["blocked"] or bool(delta and delta.blocked)
            if is_final(result):
                marks["final"] = time.perf_counter()

    started = time.perf_counter()
    try:
        await asyncio.wait_for(consume(), timeout_s)
    except asyncio.TimeoutError:
        if "final" not in marks:
            record["error"] = f"no final response within {timeout_s:.0f}s"
    except InferenceServerException as exc:
        record["error"] = exc.message() or str(exc)
    except Exception as exc:  # noqa: BLE001 - grpc errors end one request, not the level
        record["error"] = f"{type(exc).__name__}: {exc}"
    if record["error"] and calls:
        calls[0].cancel()
    done = marks.get("final", time.perf_counter())
    if not record["error"] and "final" not in marks:
        record["error"] = "the stream ended without a final response"
    record["start"] = started
    record["ttft_s"] = marks["first"] - started if "first" in marks else np.nan
    record["latency_s"] = done - started
    return record


async def _run_level_async(
    grpc_url: str, model: str, *, concurrency: int, indices: Sequence[int], max_tokens: int,
    prompts: Sequence[str], prompt_is_formatted: bool, sampling: Mapping[str, Any] | None, progress: bool,
    endpoint: str, timeout_s: float, stream: bool = True, start_together: Any = None,
) -> list[dict[str, Any]]:
    """Requests ``indices`` (request ``i`` carries ``prompts[i % len(prompts)]``), ``concurrency`` at a time.

    Each row's ``start`` is an absolute ``time.perf_counter()`` reading: the system's monotonic
    clock, comparable between processes on one machine. ``start_together``: a barrier shared
    with the level's other client processes, passed once this one is ready to send.
    """
    import tritonclient.grpc.aio as aioclient
    from tqdm.auto import tqdm

    params = {"ignore_eos": True, **dict(sampling or {})}
    payloads = {
        i: request_inputs(model, prompts[i % len(prompts)], stream=stream, max_tokens=max_tokens, sampling=params,
                          prompt_is_formatted=prompt_is_formatted)
        for i in indices
    }
    client = aioclient.InferenceServerClient(to_grpc_address(grpc_url))
    rows: list[dict[str, Any]] = []
    order = iter(indices)
    bar = tqdm(total=len(payloads), desc=f"{endpoint} c={concurrency} max_tokens={max_tokens}", unit="req",
               disable=not progress, leave=False, file=sys.stderr)

    async def worker() -> None:
        for index in order:  # a shared iterator: each index is taken by exactly one worker
            inputs = grpc_inputs(payloads[index], model)
            record = await _one_request(client, model, inputs, f"{endpoint}-{index}-{uuid.uuid4().hex[:8]}",
                                        timeout_s)
            record["request"] = index
            rows.append(record)
            bar.update(1)

    try:
        if start_together is not None:
            await _wait_for_the_other_shares(start_together)
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(payloads)))))
    finally:
        bar.close()
        await client.close()
    return rows


async def _wait_for_the_other_shares(barrier) -> None:
    """Return when every client process of the level has reached ``barrier`` (a manager's ``Barrier``).

    Raises :class:`SetupError` when one never does within :data:`START_TOGETHER_TIMEOUT_S`
    (or the level was abandoned meanwhile).
    """
    try:
        await asyncio.to_thread(barrier.wait, START_TOGETHER_TIMEOUT_S)
    except (threading.BrokenBarrierError, EOFError, OSError) as exc:
        raise SetupError(
            f"the level's client processes were not all ready within {START_TOGETHER_TIMEOUT_S:.0f} s "
            f"({type(exc).__name__}); see the other processes' error, or run every stream in one "
            "process (streams_per_process=0)"
        ) from None


def _run_share(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """One worker process's share of a level (a top-level function, so a process pool can call it)."""
    return asyncio.run(_run_level_async(**kwargs))


def process_count(concurrency: int, streams_per_process: int | None, max_processes: int | None = None) -> int:
    """How many client processes carry ``concurrency`` streams: one per ``streams_per_process`` started.

    ``None`` (or 0) keeps every level in the calling process. ``max_processes`` defaults to
    the machine's CPU count.
    """
    if not streams_per_process:
        return 1
    limit = max_processes or multiprocessing.cpu_count()
    return max(1, min(limit, math.ceil(concurrency / streams_per_process)))


def shares(concurrency: int, requests: int, processes: int) -> list[tuple[int, list[int]]]:
    """Split a level into ``(concurrency, request indices)`` per process, both as even as they go.

    A process's requests follow its share of the streams, so every share keeps its streams
    busy for about as long as the others.
    """
    processes = max(1, min(processes, concurrency, requests))
    streams = [concurrency // processes + (k < concurrency % processes) for k in range(processes)]
    bounds = [0]
    for k in range(processes):
        bounds.append(round(requests * sum(streams[: k + 1]) / concurrency))
    parts = [(streams[k], list(range(bounds[k], bounds[k + 1]))) for k in range(processes)]
    return [(c, indices) for c, indices in parts if indices]


def client_pool(processes: int) -> ProcessPoolExecutor:
    """Worker processes for :func:`run_level` (``spawn``: safe under Jupyter and with gRPC threads)."""
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))


def _run_sync(coro_factory: Callable[[], Any]):
    """Run a coroutine to completion, also from a thread that already runs a loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    box: dict[str, Any] = {}

    def target():
        """Run the coroutine on a fresh event loop in this thread; keep its result or its exception."""
        try:
            box["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kit-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_level(
    grpc_url: str,
    model: str,
    *,
    concurrency: int,
    requests: int,
    max_tokens: int,
    prompts: Sequence[str],
    prompt_is_formatted: bool = True,
    sampling: Mapping[str, Any] | None = None,
    progress: bool = True,
    endpoint: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    processes: int = 1,
    pool: Executor | None = None,
    stream: bool = True,
) -> pd.DataFrame:
    """``requests`` requests to ``model``, ``concurrency`` at a time: one row per request.

    Requests stream unless ``stream`` is false (then the one answer's arrival is both TTFT and latency).

    Request ``i`` carries ``prompts[i % len(prompts)]``, so two endpoints measured with the
    same arguments receive the same requests. With ``processes`` > 1 the streams are shared
    out over that many client processes (taken from ``pool`` when given, see
    :func:`client_pool`), which start sending together once all are ready; their rows are
    joined on the common monotonic clock.
    """
    if concurrency < 1 or requests < 1 or max_tokens < 1:
        raise ValueError(f"concurrency, requests and max_tokens must be ≥ 1 "
                         f"(got {concurrency}, {requests}, {max_tokens})")
    if not prompts:
        raise ValueError("prompts is empty")
    label = endpoint or model
    common = dict(grpc_url=grpc_url, model=model, max_tokens=max_tokens, prompts=list(prompts),
                  prompt_is_formatted=prompt_is_formatted, sampling=dict(sampling or {}), endpoint=label,
                  timeout_s=timeout_s, stream=stream)
    parts = shares(concurrency, requests, processes)
    if len(parts) == 1:
        rows = _run_sync(lambda: _run_level_async(concurrency=concurrency, indices=range(requests),
                                                  progress=progress, **common))
    else:
        own = pool is None
        pool = client_pool(len(parts)) if own else pool
        # The shares start together: a worker process the pool spawns for this level was ready up to
        # 0.8 s after one kept from the level before (H200, 256 streams over 8 processes), and its
        # streams' late start cost the level 3-10 % of its output tok/s.
        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(len(parts))
            jobs = [dict(common, concurrency=c, indices=indices, progress=False, start_together=barrier)
                    for c, indices in parts]
            try:
                rows = [row for part in pool.map(_run_share, jobs) for row in part]
            except BaseException:
                with contextlib.suppress(Exception):
                    barrier.abort()  # the shares still waiting give up at once
                raise
            finally:
                if own:
                    pool.shutdown()
    level_start = min(row["start"] for row in rows)
    for row in rows:
        row["start_s"] = row.pop("start") - level_start
    frame = pd.DataFrame(rows)
    frame["endpoint"] = label
    frame["model"] = model
    frame["concurrency"] = int(concurrency)
    frame["max_tokens"] = int(max_tokens)
    ok = frame["error"] == ""
    frame["output_tokens"] = np.where(ok & ~frame["blocked"], int(max_tokens), 0)
    frame = frame.sort_values("request").reset_index(drop=True)
    return frame[REQUEST_COLUMNS]


# --------------------------------------------------------------------------- sweeps


def _count(requests_per_level: int | Callable[[str, int], int], label: str, concurrency: int) -> int:
    n = requests_per_level(label, concurrency) if callable(requests_per_level) else requests_per_level
    return max(1, int(n))


def save(per_request: pd.DataFrame, summary: pd.DataFrame, out_dir: Path | str) -> Path:
    """Write ``requests.csv``, ``sweep.csv`` (:data:`SWEEP_COLUMNS` first) and ``sweep.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_request.to_csv(out / "requests.csv", index=False)
    summary.to_csv(out / "sweep.csv", index=False)
    records = json.loads(summary.to_json(orient="records"))
    (out / "sweep.json").write_text(json.dumps(records, indent=2) + "\n")
    return out


def slice_bounds(requests: int, concurrency: int, rounds: int) -> list[tuple[int, int]]:
    """The request numbers ``[first, last)`` of each slice :func:`sweep` cuts a level into.

    ``rounds`` slices, but never one holding fewer requests than the concurrency (the level
    would not reach it): ``min(rounds, requests // concurrency)`` slices, at least one.
    """
    parts = max(1, min(rounds, requests // concurrency))
    return [(requests * t // parts, requests * (t + 1) // parts) for t in range(parts)]


def sweep(
    grpc_url: str,
    endpoints: Mapping[str, str],
    *,
    concurrencies: Sequence[int],
    max_tokens_list: Sequence[int],
    requests_per_level: int | Callable[[str, int], int],
    prompts: Sequence[str],
    out_dir: Path | str | None = None,
    progress: bool = True,
    prompt_is_formatted: bool = True,
    sampling: Mapping[str, Any] | None = None,
    warmup: int = 2,
    rounds: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    streams_per_process: int | None = None,
    max_processes: int | None = None,
    before_level: Callable[[int, int], bool] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every endpoint at every max_tokens × concurrency level, endpoints back to back per level.

    ``endpoints`` maps a label (``direct``, ``pipeline``, ...) to a model name.
    ``requests_per_level`` is a count or ``f(label, concurrency) -> count``. ``warmup``
    requests per endpoint are sent first and not recorded. With ``rounds`` > 1 each level's
    requests are split into that many slices and the endpoints take turns slice by slice, so
    a passing disturbance (a busy neighbour on a shared machine) hits every endpoint alike
    (an endpoint gets fewer slices when a slice would hold fewer requests than the
    concurrency); the slices are joined end to end, so the level's wall time is the sum of
    its slices'. ``streams_per_process`` shares each level's streams out over client
    processes (see :func:`process_count`); one pool serves the whole sweep.
    ``before_level(max_tokens, concurrency)`` runs before each level; when it returns False
    the sweep stops there and returns the levels measured so far (e.g. the server lost a stub).
    Request ``i`` carries the same prompt whatever the endpoint. Returns
    ``(per_request, summary)`` and, with ``out_dir``, saves them (see :func:`save`).
    """
    if not endpoints:
        raise ValueError("endpoints is empty; e.g. {'direct': 'llama3-8b-instruct'}")
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    options = dict(prompt_is_formatted=prompt_is_formatted, sampling=sampling, timeout_s=timeout_s)
    widest = process_count(max(concurrencies), streams_per_process, max_processes)
    pool = client_pool(widest) if widest > 1 else None
    try:
        for label, model in endpoints.items():
            if warmup > 0:
                run_level(grpc_url, model, concurrency=min(warmup, max(concurrencies)), requests=warmup,
                          max_tokens=min(max_tokens_list), prompts=prompts, progress=False, endpoint=label,
                          **options)
        frames = []
        for max_tokens, concurrency in [(int(mt), int(c)) for mt in max_tokens_list for c in concurrencies]:
            if before_level is not None and not before_level(max_tokens, concurrency):
                break
            counts = {label: _count(requests_per_level, label, concurrency) for label in endpoints}
            bounds = {label: slice_bounds(n, concurrency, rounds) for label, n in counts.items()}
            processes = process_count(concurrency, streams_per_process, max_processes)
            slices: dict[str, list[pd.DataFrame]] = {label: [] for label in endpoints}
            for turn in range(rounds):
                for label, model in endpoints.items():
                    if turn >= len(bounds[label]):
                        continue
                    first, last = bounds[label][turn]
                    shifted = [prompts[(first + i) % len(prompts)] for i in range(len(prompts))]
                    frame = run_level(grpc_url, model, concurrency=concurrency, requests=last - first,
                                      max_tokens=max_tokens, prompts=shifted, progress=progress, endpoint=label,
                                      processes=processes, pool=pool, **options)
                    frame["request"] += first
                    slices[label].append(frame)
            for label in endpoints:
                offset = 0.0
                for frame in slices[label]:
                    frame["start_s"] += offset
                    offset = float((frame["start_s"] + frame["latency_s"]).max())
                    frames.append(frame)
    finally:
        if pool is not None:
            pool.shutdown()
    per_request = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REQUEST_COLUMNS)
    summary = summarize(per_request)
    if out_dir is not None:
        save(per_request, summary, out_dir)
    return per_request, summary


__all__ = [
    "SWEEP_COLUMNS", "EXTRA_SUMMARY_COLUMNS", "REQUEST_COLUMNS", "run_level", "slice_bounds", "sweep", "summarize",
    "inter_token_latency_s", "save", "process_count", "shares", "client_pool",
]
