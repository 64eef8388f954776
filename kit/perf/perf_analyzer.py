"""Triton's ``perf_analyzer``, run for real: find it, feed it, sweep, read its CSV.

``perf_analyzer`` is NVIDIA's request-level load generator, the tool the original
showcase used. The ``tritonclient==2.51.0`` wheel ships it into the virtual
environment's ``bin/``; it links ``libcudart.so.12`` (PyPI's
``nvidia-cuda-runtime-cu12``, put on ``LD_LIBRARY_PATH`` here) and Debian's
``libb64.so.0d``.

What it measures on this kit's models, which are all decoupled (streaming):

* it must talk gRPC with ``--streaming`` (HTTP ``infer`` does not work on decoupled models);
* ``Inferences/Second`` counts *requests* completed per second, ``Response Throughput``
  counts streamed responses (about one per generated token);
* its latency columns are the time to the **first** response of each request
  ("Detected decoupled model, using the first response for measuring latency"), not the
  time to the whole answer. :func:`run` records this in the ``latency_measures`` column.
  The token-level view (TTFT, inter-token latency, whole-answer latency) is
  :mod:`kit.perf.load`'s job.

Every run keeps three files per call in ``out_dir``: the ``--input-data`` JSON, the
``-f`` CSV and a ``.log`` with the command line and perf_analyzer's own output.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from kit import contract
from kit.client import request_inputs
from kit.endpoints import to_grpc_address
from kit.exceptions import PerfAnalyzerError, SetupError

BINARY = "perf_analyzer"
CUDART = "libcudart.so.12"

DEFAULT_MEASUREMENT_INTERVAL_MS = 5000  # perf_analyzer's own defaults
DEFAULT_STABILITY_PERCENTAGE = 10
DEFAULT_MAX_TRIALS = 10

FIRST_RESPONSE_NOTE = "using the first response for measuring latency"

# perf_analyzer's CSV header → (column here, factor to apply). Times are µs in the CSV.
_CSV_COLUMNS: dict[str, tuple[str, float]] = {
    "Concurrency": ("concurrency", 1.0),
    "Request Rate": ("request_rate", 1.0),
    "Inferences/Second": ("throughput_infer_s", 1.0),
    "Response Throughput": ("response_throughput_s", 1.0),
    "Client Send": ("client_send_ms", 1e-3),
    "Network+Server Send/Recv": ("network_server_ms", 1e-3),
    "Server Queue": ("server_queue_ms", 1e-3),
    "Server Compute Input": ("server_compute_input_ms", 1e-3),
    "Server Compute Infer": ("server_compute_infer_ms", 1e-3),
    "Server Compute Output": ("server_compute_output_ms", 1e-3),
    "Client Recv": ("client_recv_ms", 1e-3),
    "Avg latency": ("latency_avg_ms", 1e-3),
    "p50 latency": ("latency_p50_ms", 1e-3),
    "p90 latency": ("latency_p90_ms", 1e-3),
    "p95 latency": ("latency_p95_ms", 1e-3),
    "p99 latency": ("latency_p99_ms", 1e-3),
    "request/response": ("requests_per_response", 1.0),
    "response wait": ("response_wait_ms", 1e-3),
    "Avg Batch Size": ("avg_batch_size", 1.0),
}
# Their sum is perf_analyzer's average latency (it derives the network share from it).
_LATENCY_PARTS = (
    "client_send_ms", "network_server_ms", "server_queue_ms", "server_compute_input_ms",
    "server_compute_infer_ms", "server_compute_output_ms", "client_recv_ms",
)
LEADING_COLUMNS = (
    "model", "concurrency", "max_tokens", "throughput_infer_s", "latency_avg_ms",
    "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
)


# --------------------------------------------------------------------------- the binary


def find_perf_analyzer() -> Path:
    """The ``perf_analyzer`` binary: ``$PERF_ANALYZER``, this interpreter's ``bin/``, then ``PATH``."""
    candidates: list[Path] = []
    if os.environ.get("PERF_ANALYZER"):
        candidates.append(Path(os.environ["PERF_ANALYZER"]))
    candidates.append(Path(sys.executable).parent / BINARY)
    candidates.append(Path(sysconfig.get_paths()["scripts"]) / BINARY)
    found = shutil.which(BINARY)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise SetupError(
        "perf_analyzer not found: run `make setup` (tritonclient[all]==2.51.0 installs it into "
        ".venv/bin), put NVIDIA's SDK perf_analyzer on PATH, or set PERF_ANALYZER to its path"
    )


def cuda_runtime_lib_dir() -> Path | None:
    """``site-packages/nvidia/cuda_runtime/lib`` of ``nvidia-cuda-runtime-cu12``, if installed."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec else []
    roots += [str(Path(p) / "nvidia" / "cuda_runtime") for p in {sysconfig.get_paths()["purelib"],
                                                                  sysconfig.get_paths()["platlib"]}]
    for root in roots:
        lib = Path(root) / "lib"
        if (lib / CUDART).exists():
            return lib
    return None


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment perf_analyzer runs in: the CUDA runtime's folder first on ``LD_LIBRARY_PATH``."""
    env = dict(os.environ if base is None else base)
    lib = cuda_runtime_lib_dir()
    parts = [str(lib)] if lib else []
    parts += [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p not in parts]
    if parts:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
    return env


def missing_libraries(binary: Path, env: Mapping[str, str]) -> list[str]:
    """Shared libraries ``ldd`` cannot resolve for ``binary`` (empty when ldd is unavailable)."""
    ldd = shutil.which("ldd")
    if not ldd:
        return []
    try:
        out = subprocess.run([ldd, str(binary)], env=dict(env), capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]


def check_libraries(binary: Path, env: Mapping[str, str]) -> None:
    """Raise :class:`SetupError` naming the fix when perf_analyzer could not start."""
    missing = missing_libraries(binary, env)
    if not missing:
        return
    fixes = []
    for lib in missing:
        if lib.startswith("libb64"):
            fixes.append(f"{lib}: install Debian's libb64-0d (`apt-get install libb64-0d`)")
        elif lib.startswith("libcudart"):
            fixes.append(f"{lib}: run `make setup` (it installs nvidia-cuda-runtime-cu12 into .venv)")
        else:
            fixes.append(f"{lib}: install the package that provides it")
    raise SetupError(f"perf_analyzer ({binary}) cannot start, missing " + "; ".join(fixes))


# --------------------------------------------------------------------------- input data


def _json_value(tensor: contract.Tensor, value: Any) -> list:
    """One input's value in perf_analyzer's JSON: BYTES as text, the rest as the declared type."""
    if tensor.wire_type == "BYTES":
        return [value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)]
    if tensor.wire_type == "BOOL":
        return [bool(value)]
    return [int(value) if tensor.wire_type.startswith(("INT", "UINT")) else float(value)]


def input_data(
    model: str,
    prompts: Sequence[str],
    max_tokens: int,
    stream: bool = True,
    *,
    prompt_is_formatted: bool = True,
    sampling: Mapping[str, Any] | None = None,
) -> dict:
    """perf_analyzer's ``--input-data`` JSON: one entry per prompt, in the model's own inputs.

    The pipeline takes ``max_tokens`` as an INT32 input; the LLM takes it inside
    ``sampling_parameters`` and needs ``exclude_input_in_output`` to stream.
    ``ignore_eos`` is set so every request generates exactly ``max_tokens`` tokens.
    Prompts are taken as chat-formatted (as :func:`kit.perf.prompts.default_prompts` makes
    them): the pipeline is told so and sends them to the LLM unchanged, like the direct
    requests. Pass ``prompt_is_formatted=False`` to let the pipeline apply the template.
    """
    if not prompts:
        raise ValueError("input_data needs at least one prompt")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be ≥ 1, got {max_tokens}")
    params = {"ignore_eos": True, **dict(sampling or {})}
    declared = contract.for_model(model)
    entries = []
    for prompt in prompts:
        inputs = request_inputs(model, prompt, stream=stream, max_tokens=max_tokens, sampling=params,
                                prompt_is_formatted=prompt_is_formatted)
        entries.append({name: _json_value(declared.input(name), value) for name, value in inputs.items()})
    return {"data": entries}


# --------------------------------------------------------------------------- command line


def concurrency_ranges(levels: Iterable[int]) -> list[str]:
    """``--concurrency-range`` values covering ``levels``: one ``start:end:step`` if evenly spaced."""
    values = sorted({int(c) for c in levels})
    if not values:
        raise ValueError("concurrency needs at least one level")
    if values[0] < 1:
        raise ValueError(f"concurrency levels must be ≥ 1, got {values}")
    if len(values) == 1:
        return [f"{values[0]}:{values[0]}"]
    steps = {b - a for a, b in zip(values, values[1:], strict=False)}
    if len(steps) == 1:
        return [f"{values[0]}:{values[-1]}:{steps.pop()}"]
    return [f"{v}:{v}" for v in values]


def command(
    binary: Path | str,
    grpc_url: str,
    model: str,
    *,
    concurrency_range: str,
    input_file: Path | str,
    csv_file: Path | str,
    measurement_interval_ms: int = DEFAULT_MEASUREMENT_INTERVAL_MS,
    stability_percentage: float = DEFAULT_STABILITY_PERCENTAGE,
    max_trials: int = DEFAULT_MAX_TRIALS,
    request_count: int | None = None,
    streaming: bool = True,
    extra_args: Iterable[str] = (),
) -> list[str]:
    """The perf_analyzer command line for one sweep over gRPC."""
    args = [
        str(binary),
        "-m", model,
        "-u", to_grpc_address(grpc_url),
        "-i", "grpc",
        "--input-data", str(input_file),
        "--concurrency-range", concurrency_range,
        "--measurement-interval", str(int(measurement_interval_ms)),
        "--stability-percentage", f"{stability_percentage:g}",
        "--max-trials", str(int(max_trials)),
        "--verbose-csv",
        "-f", str(csv_file),
    ]
    if streaming:
        args.append("--streaming")
    if request_count:
        args += ["--request-count", str(int(request_count))]
    return args + list(extra_args)


def is_decoupled(grpc_url: str, model: str) -> bool:
    """Whether ``model`` streams (decoupled transaction policy); True when the server cannot say."""
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(to_grpc_address(grpc_url))
        try:
            config = client.get_model_config(model).config
        finally:
            client.close()
        return bool(config.model_transaction_policy.decoupled)
    except Exception:  # noqa: BLE001 - the kit's models are all decoupled
        return True


# --------------------------------------------------------------------------- results


def parse_csv(path: Path | str) -> pd.DataFrame:
    """perf_analyzer's ``-f`` CSV as a DataFrame: throughput in 1/s, every time in milliseconds."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    table: list[str] = []
    for line in lines:  # --collect-metrics appends a second table after a blank line
        if not line.strip():
            if table:
                break
            continue
        table.append(line)
    if len(table) < 2:
        raise PerfAnalyzerError(f"{path} holds no measurement (perf_analyzer wrote only {len(table)} line(s))")
    import io

    raw = pd.read_csv(io.StringIO("\n".join(table)))
    out = pd.DataFrame(index=raw.index)
    for name in raw.columns:
        key = name.strip()
        column, factor = _CSV_COLUMNS.get(key, (re.sub(r"[^0-9a-z]+", "_", key.lower()).strip("_"), 1.0))
        values = pd.to_numeric(raw[name], errors="coerce")
        out[column] = values * factor if factor != 1.0 else values
    if "concurrency" in out:
        out["concurrency"] = out["concurrency"].astype("int64")
    if "latency_avg_ms" not in out and all(c in out for c in _LATENCY_PARTS):
        out["latency_avg_ms"] = out[list(_LATENCY_PARTS)].sum(axis=1)
    first = [c for c in LEADING_COLUMNS if c in out]
    return out[first + [c for c in out.columns if c not in first]]


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in LEADING_COLUMNS if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]].reset_index(drop=True)


def _explain(log_text: str, url: str, csv_file: Path, log_file: Path, returncode: int | None) -> str:
    lines = [ln for ln in log_text.strip().splitlines()[1:] if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|failed|unable|invalid|not supported", ln, re.I)]
    tail = "\n".join((errors or lines)[-6:])
    if "Failed to obtain stable measurement" in log_text:
        hint = ("measurements did not stabilise: raise measurement_interval_ms or stability_percentage, "
                "or pass request_count for a fixed number of requests")
    elif "failed to connect" in log_text.lower() or "connection refused" in log_text.lower():
        hint = f"no server answered at {url}: start one (`python -m kit serve --detach`) or fix the URL"
    elif returncode is None:
        hint = "perf_analyzer did not finish in time (is the server still alive?)"
    else:
        hint = f"perf_analyzer exited with code {returncode} and wrote no {csv_file.name}"
    return f"{hint}\n{tail}\nfull log: {log_file}"


def _default_timeout(levels: int, interval_ms: int, max_trials: int, request_count: int | None) -> float:
    if request_count:
        return 120.0 + 60.0 * levels
    return 120.0 + levels * max_trials * (interval_ms / 1000.0) * 2.5


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run(
    grpc_url: str,
    model: str,
    *,
    concurrency: Sequence[int],
    max_tokens: int,
    prompts: Sequence[str],
    out_dir: Path | str,
    measurement_interval_ms: int = DEFAULT_MEASUREMENT_INTERVAL_MS,
    stability_percentage: float = DEFAULT_STABILITY_PERCENTAGE,
    max_trials: int = DEFAULT_MAX_TRIALS,
    request_count: int | None = None,
    stream: bool = True,
    prompt_is_formatted: bool = True,
    sampling: Mapping[str, Any] | None = None,
    streaming: bool | None = None,
    timeout_s: float | None = None,
    extra_args: Iterable[str] = (),
) -> pd.DataFrame:
    """A perf_analyzer concurrency sweep of ``model``: one row per concurrency level.

    ``request_count`` measures exactly that many requests per level instead of waiting for
    ``max_trials`` windows of ``measurement_interval_ms`` to agree within
    ``stability_percentage`` — the robust choice for very short runs. ``streaming`` (gRPC
    ``--streaming``) defaults to what the server says of the model (decoupled or not).
    """
    binary = find_perf_analyzer()
    env = environment()
    check_libraries(binary, env)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if streaming is None:
        streaming = is_decoupled(grpc_url, model)
    stem = f"{_safe(model)}_mt{int(max_tokens)}"
    input_file = out / f"{stem}_input.json"
    data = input_data(model, prompts, max_tokens, stream=stream, prompt_is_formatted=prompt_is_formatted,
                      sampling=sampling)
    input_file.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    frames = []
    # perf_analyzer takes --request-count for one concurrency level per run only
    ranges = concurrency_ranges(concurrency) if not request_count else [f"{c}:{c}" for c in sorted(set(concurrency))]
    for crange in ranges:
        start, stop, step = _range_bounds(crange)
        label = str(start) if stop - 1 == start else f"{start}-{stop - 1}" + (f"by{step}" if step != 1 else "")
        csv_file = out / f"{stem}_c{label}.csv"
        log_file = csv_file.with_suffix(".log")
        csv_file.unlink(missing_ok=True)
        cmd = command(binary, grpc_url, model, concurrency_range=crange, input_file=input_file, csv_file=csv_file,
                      measurement_interval_ms=measurement_interval_ms, stability_percentage=stability_percentage,
                      max_trials=max_trials, request_count=request_count, streaming=streaming,
                      extra_args=extra_args)
        levels = len(range(start, stop, step))
        limit = timeout_s or _default_timeout(levels, measurement_interval_ms, max_trials, request_count)
        returncode: int | None
        with open(log_file, "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            try:
                returncode = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, timeout=limit).returncode
            except subprocess.TimeoutExpired:
                returncode = None
        log_text = log_file.read_text(encoding="utf-8", errors="replace")
        if returncode != 0 or not csv_file.is_file():
            raise PerfAnalyzerError(f"perf_analyzer on {model} (concurrency {crange}): "
                                    + _explain(log_text, grpc_url, csv_file, log_file, returncode))
        frame = parse_csv(csv_file)
        frame["latency_measures"] = "first_response" if FIRST_RESPONSE_NOTE in log_text else "request"
        frame["csv"] = csv_file.name
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    result.insert(0, "model", model)
    result["max_tokens"] = int(max_tokens)
    wanted = sorted({int(c) for c in concurrency})
    result = result[result["concurrency"].isin(wanted)].sort_values("concurrency")
    return _order(result)


def _range_bounds(crange: str) -> tuple[int, int, int]:
    parts = [int(p) for p in crange.split(":") if p]
    start = parts[0]
    end = parts[1] if len(parts) > 1 else start
    step = parts[2] if len(parts) > 2 else 1
    return start, end + 1, step


def max_tokens_sweep(
    grpc_url: str,
    model: str,
    *,
    max_tokens_list: Sequence[int],
    concurrency: int = 1,
    prompts: Sequence[str],
    out_dir: Path | str,
    **options,
) -> pd.DataFrame:
    """One perf_analyzer measurement per ``max_tokens`` value at a fixed concurrency (the seed's 4.2)."""
    if not max_tokens_list:
        raise ValueError("max_tokens_list needs at least one value")
    frames = [
        run(grpc_url, model, concurrency=[concurrency], max_tokens=int(mt), prompts=prompts, out_dir=out_dir,
            **options)
        for mt in max_tokens_list
    ]
    return _order(pd.concat(frames, ignore_index=True))
