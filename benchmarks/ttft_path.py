"""Where the first token's time goes at one stream: each hop of the kit's path, side by side.

Against a running server (``python -m kit serve --detach --openai``), one request at a time, the
same question on four paths (five with ``--vllm-url``), interleaved round by round so that drift
hits all of them alike:

* ``grpc llm``: the kit's gRPC client straight to the LLM (the chat-formatted prompt);
* ``grpc pipeline``: the same through ``llama_bls_ensemble`` (guard, LLM, censor);
* ``http llm`` / ``http pipeline``: the kit's OpenAI service (``/v1/chat/completions``, streamed),
  read with a bare HTTP client so that no SDK's parsing is counted;
* ``vllm serve`` (with ``--vllm-url``): vLLM's own OpenAI server on the same GPU, the same request
  as ``http llm``, so that the kit's path and the one users would pick instead are timed in the
  same rounds (start it with the kit's engine arguments, e.g. ``kit.perf.head_to_head.VllmServe``,
  and enough ``gpu_memory_utilization`` left for both).

Each path runs at ``max_tokens`` 1, where the answer's only token is also its last, and at the
larger ``--max-tokens``. The differences are the hops: ``http − grpc`` is the OpenAI service;
``pipeline − llm`` at 1 token is the BLS hop and the guard; ``pipeline − llm`` at more tokens adds
the output censor holding the first word until the next token shows where it ends (a word may
still grow into a banned compound, ``kit.guardrails.matcher``): one inter-token time. TTFT is the
time to the first piece that carries text. Medians and 10th–90th percentiles in ms::

    python benchmarks/ttft_path.py --rounds 40
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.detached import read_state
from kit.perf.bench import _tokenizer_path
from kit.pipeline import PromptFormatter

QUESTION = "What does Triton do?"


def grpc_ttft(client: Client, model: str, prompt: str, max_tokens: int) -> float:
    """Seconds to the first piece with text (the kit client's ``ttft_s``); the stream is read to its end."""
    return client.generate(prompt, model=model, stream=True, max_tokens=max_tokens, sampling={"temperature": 0}).ttft_s


def http_ttft(conn: http.client.HTTPConnection, model: str, max_tokens: int) -> float:
    """Seconds to the first server-sent event whose delta carries text; the stream is read to its end."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": QUESTION}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True})
    started, first = time.perf_counter(), None
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"{model}: HTTP {response.status}: {response.read()[:300]!r}")
    while line := response.readline():
        if line.startswith(b"data: [DONE]"):
            response.read()
            break
        if first is None and line.startswith(b"data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                first = time.perf_counter() - started
    return first


def connection(url: str) -> http.client.HTTPConnection:
    """One kept-alive connection to an OpenAI server's ``http://host:port``."""
    parsed = urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--max-tokens", type=int, default=8, help="the longer answer (the shorter is 1 token)")
    p.add_argument("--openai-url", default=None, help="the kit's OpenAI service (default: the detached server's)")
    p.add_argument("--vllm-url", default=None, help="also time `vllm serve` at this URL (serving the model "
                   f"as {LLM_MODEL}, as kit.perf.head_to_head.VllmServe starts it)")
    args = p.parse_args()
    state = read_state()
    if not state or not (args.openai_url or state.openai_port):
        raise SystemExit("no server with the OpenAI service is running: start one with "
                         "`python -m kit serve --detach --openai`")
    client = Client(state.endpoints.grpc_address)
    tokenizer = _tokenizer_path(state.endpoints.grpc_address)  # what the pipeline formats with
    if tokenizer is None:
        raise SystemExit(f"{PIPELINE_MODEL} names no tokenizer folder this machine has")
    prompt = PromptFormatter.load(tokenizer).chat_text([{"role": "user", "content": QUESTION}])
    conn = connection(args.openai_url or f"http://127.0.0.1:{state.openai_port}")
    paths = {
        "grpc llm": lambda n: grpc_ttft(client, LLM_MODEL, prompt, n),
        "grpc pipeline": lambda n: grpc_ttft(client, PIPELINE_MODEL, QUESTION, n),
        "http llm": lambda n: http_ttft(conn, LLM_MODEL, n),
        "http pipeline": lambda n: http_ttft(conn, PIPELINE_MODEL, n),
    }
    if args.vllm_url:
        vllm_conn = connection(args.vllm_url)
        paths["vllm serve"] = lambda n: http_ttft(vllm_conn, LLM_MODEL, n)
    lengths = (1, args.max_tokens)
    times: dict[tuple[str, int], list[float]] = {(path, n): [] for path in paths for n in lengths}
    for round_ in range(args.rounds + 3):  # the first three warm every path
        for (path, n), samples in times.items():
            seconds = paths[path](n)
            if round_ >= 3 and seconds is not None:
                samples.append(seconds * 1000)
    print(f"TTFT at one stream, {args.rounds} interleaved rounds (ms): median [p10-p90]")
    for n in lengths:
        row = {}
        for path in paths:
            samples = sorted(times[(path, n)])
            row[path] = statistics.median(samples)
            print(f"  max_tokens {n:3d}  {path:14s} {row[path]:7.2f}  "
                  f"[{samples[len(samples) // 10]:.2f}-{samples[9 * len(samples) // 10]:.2f}]")
        print(f"  max_tokens {n:3d}  OpenAI service (http − grpc, llm) {row['http llm'] - row['grpc llm']:+.2f}; "
              f"pipeline − llm (grpc) {row['grpc pipeline'] - row['grpc llm']:+.2f}")
        if "vllm serve" in row:
            print(f"  max_tokens {n:3d}  kit − vllm serve: llm {row['http llm'] - row['vllm serve']:+.2f}, "
                  f"pipeline {row['http pipeline'] - row['vllm serve']:+.2f}")


if __name__ == "__main__":
    main()
