"""``python -m kit bench --vs-vllm-serve``: the kit against plain ``vllm serve``, measured by vLLM's own client.

Three targets, the same requests, one run, one client — ``vllm bench serve`` (its ``custom``
dataset: the kit's realistic user questions, :func:`kit.perf.prompts.raw_prompts`, written to
``prompts.jsonl``; exactly ``output_len`` tokens out with ``ignore_eos``; streamed chat
completions, ``max_concurrency`` requests in flight). Not vLLM's ``random`` dataset: random
token strings of a small vocabulary spell banned words often enough that the guard refuses a
quarter of them, and a refusal is no generation.

* ``vllm-serve``   — vLLM's OpenAI server on the same model folder and engine arguments as
  the kit's ``llama3-8b-instruct`` (read from the built repository's ``1/model.json``);
* ``kit-llm``      — the kit's OpenAI service → Triton → the bare LLM;
* ``kit-pipeline`` — the kit's OpenAI service → Triton → the guarded pipeline.

The engines run one after the other (``vllm serve`` first, then Triton), never together:
on a GPU each takes most of its memory, and on the CPU they would fight for the cores.
Every figure comes from ``vllm bench serve``'s saved JSON; the ratios kit / ``vllm serve``
are computed from those, level by level (:class:`Ratio`). Results: ``head_to_head.json``
and ``head_to_head.csv`` under ``--out``; notebook 04 renders them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import ServerError
from kit.health import wait_for_service

TARGETS = {"vllm-serve": LLM_MODEL, "kit-llm": LLM_MODEL, "kit-pipeline": PIPELINE_MODEL}
BASELINE = "vllm-serve"
DEFAULT_CONCURRENCY = (1, 4, 16)
DEFAULT_OUTPUT_LEN = 32
PERCENTILES = (50, 90, 99)
VLLM_SERVE_READY_S = 1800.0  # first start on a GPU compiles and captures CUDA graphs
GOAL_THROUGHPUT = 0.9  # guarded pipeline ≥ 0.9 × vllm serve output tokens/s at every concurrency
GOAL_TTFT_MS = 10.0  # guarded pipeline TTFT p50 within 10 ms of vllm serve ...
GOAL_TTFT_MAX_CONCURRENCY = 16  # ... at concurrency ≤ 16


@dataclass(frozen=True)
class ServeResult:
    """One target at one concurrency, as ``vllm bench serve`` measured it (times in ms)."""

    target: str
    concurrency: int
    completed: int
    failed: int
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p90_ms: float
    itl_p99_ms: float
    tpot_p50_ms: float

    @classmethod
    def from_bench_json(cls, target: str, concurrency: int, data: Mapping[str, Any]) -> "ServeResult":
        """From the file ``vllm bench serve --save-result`` writes (keys ``p50_ttft_ms``, ``output_throughput``...)."""
        def get(key: str) -> float:
            value = data.get(key)
            return float(value) if value is not None else math.nan

        return cls(target=target, concurrency=concurrency, completed=int(data.get("completed", 0)),
                   failed=int(data.get("failed", 0) or 0), duration_s=get("duration"),
                   output_tokens=int(data.get("total_output_tokens", 0) or 0),
                   output_tokens_per_s=get("output_throughput"), requests_per_s=get("request_throughput"),
                   ttft_p50_ms=get("p50_ttft_ms"), ttft_p90_ms=get("p90_ttft_ms"), ttft_p99_ms=get("p99_ttft_ms"),
                   itl_p50_ms=get("p50_itl_ms"), itl_p90_ms=get("p90_itl_ms"), itl_p99_ms=get("p99_itl_ms"),
                   tpot_p50_ms=get("p50_tpot_ms"))


@dataclass(frozen=True)
class Ratio:
    """A kit target against ``vllm serve`` at one concurrency: throughput ratio, TTFT/ITL p50 differences (ms)."""

    target: str
    concurrency: int
    throughput: float
    ttft_p50_diff_ms: float
    itl_p50_diff_ms: float

    def sentence(self) -> str:
        return (f"{self.target}/vllm-serve at concurrency {self.concurrency}: output tok/s {self.throughput:.2f}x, "
                f"TTFT p50 {self.ttft_p50_diff_ms:+.1f} ms, ITL p50 {self.itl_p50_diff_ms:+.2f} ms")


@dataclass(frozen=True)
class Goal:
    goal: str
    met: bool
    detail: str


def ratios(results: Iterable[ServeResult]) -> list[Ratio]:
    """Each kit target against the baseline at the same concurrency (levels without a baseline are left out)."""
    results = list(results)
    base = {r.concurrency: r for r in results if r.target == BASELINE}
    out = []
    for r in results:
        b = base.get(r.concurrency)
        if r.target == BASELINE or b is None:
            continue
        throughput = r.output_tokens_per_s / b.output_tokens_per_s if b.output_tokens_per_s else math.nan
        out.append(Ratio(r.target, r.concurrency, throughput, r.ttft_p50_ms - b.ttft_p50_ms,
                         r.itl_p50_ms - b.itl_p50_ms))
    return sorted(out, key=lambda x: (x.target, x.concurrency))


def goals(found: Sequence[Ratio]) -> list[Goal]:
    """The project's goals for the guarded pipeline (meant for a GPU; the CPU figures only show the method)."""
    pipeline = [r for r in found if r.target == "kit-pipeline"]
    if not pipeline:
        return []
    worst = min(pipeline, key=lambda r: r.throughput)
    low = [r for r in pipeline if r.concurrency <= GOAL_TTFT_MAX_CONCURRENCY]
    out = [Goal(f"guarded pipeline ≥ {GOAL_THROUGHPUT}× vllm serve output tok/s at every concurrency",
                all(r.throughput >= GOAL_THROUGHPUT for r in pipeline),
                f"lowest {worst.throughput:.2f} at concurrency {worst.concurrency}")]
    if low:
        far = max(low, key=lambda r: abs(r.ttft_p50_diff_ms))
        out.append(Goal(f"guarded pipeline TTFT p50 within {GOAL_TTFT_MS:g} ms of vllm serve at concurrency "
                        f"≤ {GOAL_TTFT_MAX_CONCURRENCY}", all(abs(r.ttft_p50_diff_ms) <= GOAL_TTFT_MS for r in low),
                        f"largest difference {far.ttft_p50_diff_ms:+.1f} ms at concurrency {far.concurrency}"))
    return out


# --------------------------------------------------------------------------- the engines


def engine_flags(engine_json: Mapping[str, Any]) -> list[str]:
    """``1/model.json``'s engine arguments as ``vllm serve`` flags (``model`` is the positional argument).

    ``max_num_seqs: 128`` → ``--max-num-seqs 128``; ``true`` → ``--flag``; ``false`` →
    ``--no-flag`` (vLLM's boolean options accept both); objects and lists → JSON.
    """
    flags: list[str] = []
    for key, value in engine_json.items():
        if key == "model" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def vllm_command(*args: str) -> list[str]:
    """vLLM's own CLI (``vllm serve``, ``vllm bench serve``) through :mod:`kit.perf.vllm_cli`."""
    return [sys.executable, "-m", "kit.perf.vllm_cli", *args]


class VllmServe:
    """``vllm serve`` on one port, in its own process session (so stopping it ends its engine too)."""

    def __init__(self, engine_json: Mapping[str, Any], *, port: int | None = None, log_file: Path | None = None):
        from kit.endpoints import free_port
        from kit.paths import new_log

        self.engine_json = dict(engine_json)
        self.port = port or free_port()
        self.log_file = log_file or new_log("vllm-serve")
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return vllm_command("serve", str(self.engine_json["model"]), "--host", "127.0.0.1", "--port", str(self.port),
                            "--served-model-name", LLM_MODEL, *engine_flags(self.engine_json))

    def start(self, timeout: float = VLLM_SERVE_READY_S) -> "VllmServe":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # as the kit's server gives its engine
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            wait_for_service(self.base_url + "/health", self.process, timeout, "vllm serve",
                             explain=lambda what: f"{what}; see {self.log_file}", interval_s=1.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        from kit.processes import kill_session

        if self.process is not None:
            kill_session(self.process.pid)
            self.process.wait(timeout=10)
            self.process = None


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Workload:
    """What ``vllm bench serve`` sends at every level."""

    tokenizer: str
    prompts_file: str
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    output_len: int = DEFAULT_OUTPUT_LEN
    prompts_per_level: int | None = None  # default max(16, 4 × concurrency)
    seed: int = 0

    def prompts(self, concurrency: int) -> int:
        return self.prompts_per_level or max(16, 4 * concurrency)


def bench_command(base_url: str, model: str, workload: Workload, concurrency: int, result_dir: Path,
                  result_file: str, api_key: str | None = None) -> list[str]:
    """One ``vllm bench serve`` run: streamed chat completions of the workload's prompts, fixed output length."""
    cmd = vllm_command(
        "bench", "serve", "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
        "--model", model, "--tokenizer", workload.tokenizer, "--dataset-name", "custom",
        "--dataset-path", workload.prompts_file, "--skip-chat-template",  # the servers apply the chat template
        "--custom-output-len", str(workload.output_len), "--ignore-eos",
        "--num-prompts", str(workload.prompts(concurrency)), "--max-concurrency", str(concurrency),
        "--request-rate", "inf", "--seed", str(workload.seed), "--num-warmups", str(min(concurrency, 4)),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", ",".join(map(str, PERCENTILES)),
        "--save-result", "--result-dir", str(result_dir), "--result-filename", result_file, "--disable-tqdm",
    )
    if api_key:
        cmd += ["--header", f"Authorization=Bearer {api_key}"]
    return cmd


def run_bench(target: str, base_url: str, workload: Workload, out: Path, log, api_key: str | None = None
              ) -> list[ServeResult]:
    """Every concurrency level of ``workload`` against one target; ``vllm bench serve``'s output goes to ``log``."""
    results = []
    for concurrency in workload.concurrency:
        name = f"{target}-c{concurrency}.json"
        cmd = bench_command(base_url, TARGETS[target], workload, concurrency, out, name, api_key)
        print(f"  {target}: concurrency {concurrency}, {workload.prompts(concurrency)} requests", file=sys.stderr)
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        path = out / name
        if done.returncode != 0 or not path.is_file():
            raise ServerError(f"vllm bench serve failed against {target} (exit {done.returncode}); see {log.name}")
        results.append(ServeResult.from_bench_json(target, concurrency, json.loads(path.read_text())))
    return results


# --------------------------------------------------------------------------- the command


def write_prompts(path: Path, n: int) -> Path:
    """``n`` of the kit's realistic user questions as ``vllm bench serve``'s custom dataset (JSON lines)."""
    from kit.perf.prompts import raw_prompts

    path.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in raw_prompts(n)))
    return path


def engine_json_of(repository: Path) -> dict[str, Any]:
    """The LLM's engine arguments in a built repository (what ``vllm serve`` must get too)."""
    path = Path(repository) / LLM_MODEL / "1" / "model.json"
    if not path.is_file():
        raise ServerError(f"{path} is missing; build the repository with `python -m kit build`")
    return json.loads(path.read_text())


def _shown(path: str | Path) -> str:
    """A path as saved results show it: relative to the checkout when inside it (results travel)."""
    from kit.weights import project_root

    try:
        return str(Path(path).resolve().relative_to(project_root().resolve()))
    except ValueError:
        return str(path)


def save(results: Sequence[ServeResult], out: Path, settings: Mapping[str, Any]) -> Path:
    """``head_to_head.json`` (settings, results, ratios, goals) and ``head_to_head.csv`` (results) in ``out``."""
    import pandas as pd

    found = ratios(results)
    report = {"settings": dict(settings), "results": [dataclasses.asdict(r) for r in results],
              "ratios": [dataclasses.asdict(r) for r in found], "goals": [dataclasses.asdict(g) for g in goals(found)]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "head_to_head.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    pd.DataFrame([dataclasses.asdict(r) for r in results]).to_csv(out / "head_to_head.csv", index=False)
    return out / "head_to_head.json"


def load(path: Path | str) -> tuple[list[ServeResult], list[Ratio]]:
    """Saved results (a ``head_to_head.json`` or the folder holding one) as records."""
    path = Path(path)
    data = json.loads((path / "head_to_head.json" if path.is_dir() else path).read_text())
    results = [ServeResult(**r) for r in data["results"]]
    return results, ratios(results)


def miscounted(results: Sequence[ServeResult], output_len: int) -> list[ServeResult]:
    """Results whose reported output tokens are not ``completed × output_len``.

    Every request asks for exactly ``output_len`` tokens with ``ignore_eos``, and ``vllm bench
    serve`` takes each answer's count from its ``usage``: any other total means a server
    reported usage that is not the engine's count, and its tokens/s cannot be compared.
    """
    return [r for r in results if r.output_tokens != r.completed * output_len]


def print_report(results: Sequence[ServeResult], output_len: int) -> None:
    header = f"{'target':13} {'conc':>4} {'done':>5} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} " \
             f"{'ITL p50':>8} {'ITL p99':>8}"
    print(header)
    for r in results:
        print(f"{r.target:13} {r.concurrency:>4} {r.completed:>5} {r.output_tokens_per_s:>10.1f} "
              f"{r.ttft_p50_ms:>9.1f} {r.ttft_p99_ms:>9.1f} {r.itl_p50_ms:>8.2f} {r.itl_p99_ms:>8.2f}")
    found = ratios(results)
    print()
    for r in miscounted(results, output_len):
        print(f"WARNING: {r.target} at concurrency {r.concurrency} reported {r.output_tokens} output tokens for "
              f"{r.completed} × {output_len}: its usage is not the engine's count")
    for goal in goals(found):
        print(f"goal {'met' if goal.met else 'MISSED'}: {goal.goal} — {goal.detail}")
    for ratio in found:
        print(ratio.sentence())


def main(args: argparse.Namespace) -> int:
    """Build (or reuse) the repository, measure ``vllm serve``, then the kit's service, and report."""
    from kit import detached
    from kit import params as kit_params
    from kit import server as srv
    from kit.deployment import ensure_repository
    from kit.openai.app import API_KEY_VARIABLES
    from kit.openai.service import OpenAIService
    from kit.processes import pid_alive
    from kit.weights import project_root, read_secret

    started = time.monotonic()
    params = kit_params.load(args.params)
    state = detached.read_state()
    if params.get("profile") == "gpu" and state and pid_alive(state.pid):
        raise ServerError("a detached server holds the GPU: stop it (`python -m kit stop`), so that vllm serve and "
                          "then the kit's own server each get the whole GPU")
    repo = ensure_repository(params)
    engine_json = engine_json_of(repo)
    out = Path(args.out) if args.out else project_root() / "reports" / "head_to_head" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    workload = Workload(
        tokenizer=str(engine_json.get("tokenizer") or engine_json["model"]), prompts_file=str(out / "prompts.jsonl"),
        concurrency=tuple(args.concurrency or DEFAULT_CONCURRENCY), output_len=args.max_tokens or DEFAULT_OUTPUT_LEN,
        prompts_per_level=args.requests)
    write_prompts(Path(workload.prompts_file), max(workload.prompts(c) for c in workload.concurrency) + 8)
    results: list[ServeResult] = []
    with open(out / "vllm-bench-serve.log", "ab") as log:
        print(f"vllm serve on {engine_json['model']} (engine arguments of {repo}/{LLM_MODEL}/1/model.json)",
              file=sys.stderr)
        vllm = VllmServe(engine_json).start()
        try:
            results += run_bench("vllm-serve", vllm.base_url, workload, out, log)
        finally:
            vllm.stop()
        server = None
        if state and detached.status(state).ready and Path(state.repository).resolve() == Path(repo).resolve():
            grpc_url = state.endpoints.grpc_address
            print(f"the kit: the detached server (pid {state.pid})", file=sys.stderr)
        else:
            print(f"the kit: starting a server for {repo} (stopped at the end)", file=sys.stderr)
            server = srv.Server(repo).start()
            grpc_url = server.endpoints.grpc_address
        try:
            with OpenAIService(grpc_url, workers=args.openai_workers) as api:  # key: .env or the environment
                key = read_secret(API_KEY_VARIABLES)
                for target in ("kit-llm", "kit-pipeline"):
                    results += run_bench(target, api.base_url, workload, out, log, api_key=key)
        finally:
            if server is not None:
                server.stop()
    settings = {**dataclasses.asdict(workload), "tokenizer": _shown(workload.tokenizer),
                "prompts_file": _shown(workload.prompts_file),
                "engine_args": {**engine_json, "model": _shown(engine_json["model"])}, "repository": _shown(repo),
                "seconds": round(time.monotonic() - started, 1)}
    path = save(results, out, settings)
    print()
    print_report(results, workload.output_len)
    print(f"results in {path}")
    return 0 if all(r.failed == 0 for r in results) and not miscounted(results, workload.output_len) else 1
