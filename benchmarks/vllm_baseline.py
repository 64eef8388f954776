"""vLLM's own ``AsyncLLM`` on the same GPU, engine arguments and prompts as the kit's server.

The yardstick for ``benchmarks/gpu_sweep.py``: no Triton, no gRPC, no Python stub — only the
engine, driven in-process the way vLLM's own API server drives it (DELTA outputs, one asyncio
task per stream). Engine arguments are read from the built repository's ``model.json`` and the
prompts are the sweep's (``kit.perf.prompts.default_prompts`` with the model's chat template), so the
difference to the kit's "direct" rows is the serving path alone. Stop the kit's server first: both
want the GPU's memory. Output: ``<out>/asyncllm.csv`` with the sweep's columns (endpoint
``vllm-asyncllm``; with ``--log-stats``, ``asyncllm-stats.csv`` and ``vllm-asyncllm-stats``)::

    python benchmarks/vllm_baseline.py --model-json build/model_repository/llama3-8b-instruct/1/model.json \\
        --tokenizer models/llama3-8b-dummy --out benchmarks/results/h200 --max-tokens 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.perf import load
from kit.perf.prompts import default_prompts


async def _one(engine, prompt: str, max_tokens: int, concurrency: int) -> dict:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    # the sweep's sampling: vLLM's defaults, fixed lengths
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, output_kind=RequestOutputKind.DELTA)
    started = time.perf_counter()
    first = None
    tokens = chunks = 0
    async for output in engine.generate(prompt, params, uuid.uuid4().hex):
        seq = output.outputs[0]
        if seq.token_ids:
            first = first or time.perf_counter()
            tokens += len(seq.token_ids)
            chunks += 1
    done = time.perf_counter()
    return {"endpoint": "vllm-asyncllm", "model": "AsyncLLM", "concurrency": concurrency, "max_tokens": max_tokens,
            "start_s": started, "ttft_s": (first - started) if first else np.nan, "latency_s": done - started,
            "chunks": chunks, "responses": chunks, "output_tokens": tokens, "output_chars": 0,
            "blocked": False, "error": ""}


async def _level(engine, prompts: list[str], concurrency: int, max_tokens: int, rounds: int) -> list[dict]:
    queue = list(range(max(4, rounds * concurrency)))
    rows: list[dict] = []

    async def worker():
        while queue:
            i = queue.pop()
            rows.append(await _one(engine, prompts[i % len(prompts)], max_tokens, concurrency))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rows


async def _main(args) -> pd.DataFrame:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    engine_json = json.loads(Path(args.model_json).read_text())
    # vLLM's statistics cost CPU on the output handler's thread; by default they are off here, as in
    # a bare engine. `--log-stats` keeps model.json's setting: the kit's server collects them
    # whenever REPORT_CUSTOM_METRICS is on and model.json does not say `disable_log_stats: true`.
    if not args.log_stats:
        engine_json["disable_log_stats"] = True
    started = time.monotonic()
    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_json))
    print(f"AsyncLLM ready in {time.monotonic() - started:.0f}s", flush=True)
    prompts = default_prompts(max(args.concurrency) * args.rounds, args.tokenizer)
    await _level(engine, prompts, 16, 16, 1)  # warm-up
    frames = []
    try:
        for max_tokens in args.max_tokens:
            for concurrency in args.concurrency:
                rows = await _level(engine, prompts, concurrency, max_tokens, args.rounds)
                frame = pd.DataFrame(rows)
                if args.log_stats:
                    frame["endpoint"] = "vllm-asyncllm-stats"
                base = frame["start_s"].min()
                frame["start_s"] -= base
                summary = load.summarize(frame)
                frames.append(summary)
                print(summary[load.SWEEP_COLUMNS].to_string(index=False, header=len(frames) == 1), flush=True)
    finally:
        engine.shutdown()
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-json", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=ints, default=ints("1,16,64,128,256,512"))
    p.add_argument("--max-tokens", type=ints, default=ints("300"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--log-stats", action="store_true",
                   help="keep vLLM's statistics as model.json sets them (the kit's server's default) instead of off")
    args = p.parse_args()
    summary = asyncio.run(_main(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "asyncllm-stats.csv" if args.log_stats else "asyncllm.csv"
    summary.to_csv(out / name, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
