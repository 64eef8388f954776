"""Unit tests of the performance kit: perf_analyzer plumbing and CSV parsing, the load
generator's arithmetic, the bench's ratios and goals, and the plots."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from kit import plots
from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import SetupError
from kit.perf import bench, load
from kit.perf import perf_analyzer as pa

# Recorded from perf_analyzer 2.51 against llama_bls_ensemble (tiny model, CPU), gRPC streaming.
RECORDED_CSV = """\
Concurrency,Inferences/Second,Response Throughput,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,\
p95 latency,p99 latency
1,20.8752,249.952,0,47034,79,40,340,14,0,44721,64450,67319,72452
2,29.4019,358.044,0,66152,77,38,363,17,0,60025,91427,106110,223133
"""
# The same with --verbose-csv (adds "Avg latency", "request/response", "response wait").
RECORDED_VERBOSE_CSV = """\
Concurrency,Inferences/Second,Response Throughput,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,\
p95 latency,p99 latency,Avg latency,request/response,response wait
2,29.9878,479.805,0,46470,147,31,450,4,0,41998,63360,75826,84606,47104,0,0
"""


# --------------------------------------------------------------------------- perf_analyzer: CSV


def test_parse_csv_converts_microseconds_and_names_columns(tmp_path):
    """perf_analyzer's CSV becomes snake_case columns with times in milliseconds."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path)
    assert list(df.columns[:7]) == ["concurrency", "throughput_infer_s", "latency_avg_ms", "latency_p50_ms",
                                    "latency_p90_ms", "latency_p95_ms", "latency_p99_ms"]
    assert df["concurrency"].tolist() == [1, 2]
    assert df["throughput_infer_s"].tolist() == [20.8752, 29.4019]
    assert df["latency_p50_ms"].tolist() == pytest.approx([44.721, 60.025])
    assert df["latency_p99_ms"].tolist() == pytest.approx([72.452, 223.133])
    assert df["server_queue_ms"].tolist() == pytest.approx([0.079, 0.077])
    assert df["server_compute_infer_ms"].tolist() == pytest.approx([0.340, 0.363])
    assert df["response_throughput_s"].tolist() == [249.952, 358.044]


def test_parse_csv_average_latency_is_the_sum_of_its_parts(tmp_path):
    """Without --verbose-csv the average latency is rebuilt from the components, as perf_analyzer reports it."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path)
    # perf_analyzer printed "Avg latency: 47508 usec" for concurrency 1 of this run
    assert df["latency_avg_ms"].iloc[0] == pytest.approx(47.507, abs=0.002)


def test_parse_csv_takes_avg_latency_from_verbose_csv(tmp_path):
    """With --verbose-csv the reported average latency is used as it is."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_VERBOSE_CSV)
    df = pa.parse_csv(path)
    assert df["latency_avg_ms"].tolist() == pytest.approx([47.104])
    assert df["response_wait_ms"].tolist() == [0.0]


def test_parse_csv_stops_at_an_appended_table(tmp_path):
    """A second table after a blank line (--collect-metrics) does not leak into the rows."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV + "\nConcurrency,Avg GPU Utilization\n1,gpu0:0.5;\n")
    assert len(pa.parse_csv(path)) == 2


def test_parse_csv_without_rows_raises(tmp_path):
    """A CSV holding only the header is reported as an error, not as an empty table."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV.splitlines()[0] + "\n")
    with pytest.raises(pa.PerfAnalyzerError, match="no measurement"):
        pa.parse_csv(path)


# --------------------------------------------------------------------------- perf_analyzer: inputs


def test_input_data_for_the_pipeline():
    """The pipeline gets max_tokens as its own INT32 input and ignore_eos in sampling_parameters."""
    data = pa.input_data(PIPELINE_MODEL, ["a", "b"], 50)
    assert len(data["data"]) == 2
    entry = data["data"][0]
    assert entry["text_input"] == ["a"]
    assert entry["max_tokens"] == [50]
    assert entry["stream"] == [True]
    assert json.loads(entry["sampling_parameters"][0]) == {"ignore_eos": True}
    assert entry["prompt_is_formatted"] == [True]  # default_prompts() are chat-formatted already
    assert "exclude_input_in_output" not in entry
    json.dumps(data)  # what perf_analyzer reads


def test_input_data_for_the_llm():
    """The LLM gets max_tokens inside sampling_parameters and must exclude the prompt to stream."""
    entry = pa.input_data(LLM_MODEL, ["hello"], 300, sampling={"temperature": 0.5})["data"][0]
    assert set(entry) == {"text_input", "stream", "exclude_input_in_output", "sampling_parameters"}
    assert entry["exclude_input_in_output"] == [True]
    assert json.loads(entry["sampling_parameters"][0]) == {"ignore_eos": True, "temperature": 0.5, "max_tokens": 300}


def test_input_data_can_leave_the_template_to_the_pipeline():
    """With raw prompts the pipeline is not told they are formatted, so it applies its chat template."""
    entry = pa.input_data(PIPELINE_MODEL, ["x"], 8, prompt_is_formatted=False)["data"][0]
    assert "prompt_is_formatted" not in entry


def test_input_data_rejects_empty_prompts_and_zero_tokens():
    """No prompts or max_tokens below one are errors, not empty runs."""
    with pytest.raises(ValueError):
        pa.input_data(PIPELINE_MODEL, [], 8)
    with pytest.raises(ValueError):
        pa.input_data(PIPELINE_MODEL, ["x"], 0)


@pytest.mark.parametrize("levels, expected", [
    ([1, 2], ["1:2:1"]),
    ([2, 4, 6], ["2:6:2"]),
    ([4], ["4:4"]),
    ([1, 8, 48], ["1:1", "8:8", "48:48"]),
    ([8, 1, 8], ["1:8:7"]),
])
def test_concurrency_ranges(levels, expected):
    """Evenly spaced levels make one perf_analyzer range, others one run per level."""
    assert pa.concurrency_ranges(levels) == expected


def test_command_line_uses_grpc_streaming():
    """Decoupled models are measured over gRPC with --streaming; the URL loses its scheme."""
    cmd = pa.command("/bin/pa", "grpc://127.0.0.1:8001", PIPELINE_MODEL, concurrency_range="1:2:1",
                     input_file="in.json", csv_file="out.csv", measurement_interval_ms=2500,
                     stability_percentage=50, max_trials=4, request_count=20)
    assert cmd[0] == "/bin/pa"
    assert cmd[cmd.index("-u") + 1] == "127.0.0.1:8001"
    assert cmd[cmd.index("-i") + 1] == "grpc"
    assert "--streaming" in cmd
    for flag, value in (("--concurrency-range", "1:2:1"), ("--measurement-interval", "2500"),
                        ("--stability-percentage", "50"), ("--max-trials", "4"), ("--request-count", "20"),
                        ("-f", "out.csv"), ("--input-data", "in.json"), ("-m", PIPELINE_MODEL)):
        assert cmd[cmd.index(flag) + 1] == value


# --------------------------------------------------------------------------- perf_analyzer: set-up


def test_find_perf_analyzer_honours_the_environment_variable(tmp_path, monkeypatch):
    """PERF_ANALYZER points at a specific binary."""
    binary = tmp_path / "perf_analyzer"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(binary))
    assert pa.find_perf_analyzer() == binary


def test_missing_perf_analyzer_names_the_fix(tmp_path, monkeypatch):
    """Without any binary the error says to run `make setup`."""
    monkeypatch.delenv("PERF_ANALYZER", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(pa.sysconfig, "get_paths", lambda: {"scripts": str(tmp_path)})
    monkeypatch.setattr(pa.shutil, "which", lambda name: None)
    with pytest.raises(SetupError, match="make setup"):
        pa.find_perf_analyzer()


def test_missing_libraries_name_their_packages(monkeypatch):
    """libb64 and libcudart each come with the command that installs them."""
    monkeypatch.setattr(pa, "missing_libraries", lambda binary, env: ["libb64.so.0d", "libcudart.so.12"])
    with pytest.raises(SetupError) as err:
        pa.check_libraries(Path("/x/perf_analyzer"), {})
    assert "apt-get install libb64-0d" in str(err.value)
    assert "make setup" in str(err.value)


def test_environment_puts_the_cuda_runtime_first(tmp_path, monkeypatch):
    """The CUDA runtime's folder leads LD_LIBRARY_PATH; what was there is kept after it."""
    monkeypatch.setattr(pa, "cuda_runtime_lib_dir", lambda: tmp_path)
    env = pa.environment({"LD_LIBRARY_PATH": "/opt/lib", "HOME": "/root"})
    assert env["LD_LIBRARY_PATH"] == f"{tmp_path}{os.pathsep}/opt/lib"
    assert env["HOME"] == "/root"


def test_installed_perf_analyzer_finds_its_libraries():
    """In the project's environment perf_analyzer and both of its libraries are present."""
    try:
        binary = pa.find_perf_analyzer()
    except SetupError:
        pytest.skip("perf_analyzer is not installed here")
    assert pa.missing_libraries(binary, pa.environment()) == []


FAKE_PERF_ANALYZER = """\
import sys
args = sys.argv[1:]
print("Detected decoupled model, using the first response for measuring latency")
if "--fail" in args:
    print("Failed to obtain stable measurement within 3 measurement windows for concurrency 1.")
    sys.exit(99)
start, end, step = (args[args.index("--concurrency-range") + 1].split(":") + ["1"])[:3]
rows = ["Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"]
for c in range(int(start), int(end) + 1, int(step)):
    rows.append(f"{c},{10 * c},0,{1000 * c},10,0,0,0,0,{900 * c},{1100 * c},{1200 * c},{1500 * c}")
open(args[args.index("-f") + 1], "w").write("\\n".join(rows) + "\\n")
"""


@pytest.fixture
def fake_perf_analyzer(tmp_path, monkeypatch):
    """A stand-in perf_analyzer that writes a CSV for the requested range."""
    script = tmp_path / "fake_perf_analyzer"
    script.write_text(f"#!{sys.executable}\n" + FAKE_PERF_ANALYZER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PERF_ANALYZER", str(script))
    monkeypatch.setattr(pa, "check_libraries", lambda binary, env: None)
    return script


def test_run_returns_one_row_per_concurrency_and_keeps_its_files(fake_perf_analyzer, tmp_path):
    """run() writes the input JSON, CSV and log, and tags rows with model and max_tokens."""
    out = tmp_path / "pa"
    df = pa.run("grpc://127.0.0.1:1", PIPELINE_MODEL, concurrency=[1, 8, 48], max_tokens=16, prompts=["p"],
                out_dir=out, streaming=True)
    assert list(df.columns[:9]) == list(pa.LEADING_COLUMNS)
    assert df["concurrency"].tolist() == [1, 8, 48]
    assert (df["model"] == PIPELINE_MODEL).all() and (df["max_tokens"] == 16).all()
    assert df["throughput_infer_s"].tolist() == [10, 80, 480]
    assert (df["latency_measures"] == "first_response").all()
    names = {p.name for p in out.iterdir()}
    assert f"{PIPELINE_MODEL}_mt16_input.json" in names
    assert {f"{PIPELINE_MODEL}_mt16_c{c}.{ext}" for c in (1, 8, 48) for ext in ("csv", "log")} <= names
    log = (out / f"{PIPELINE_MODEL}_mt16_c8.log").read_text()
    assert log.startswith("$ ") and "--concurrency-range 8:8" in log and "first response" in log


def test_max_tokens_sweep_runs_each_budget(fake_perf_analyzer, tmp_path):
    """A max_tokens sweep measures every budget at the given concurrency."""
    df = pa.max_tokens_sweep("grpc://127.0.0.1:1", LLM_MODEL, max_tokens_list=[50, 300, 600], concurrency=1,
                             prompts=["p"], out_dir=tmp_path, streaming=True)
    assert df["max_tokens"].tolist() == [50, 300, 600]
    assert df["concurrency"].tolist() == [1, 1, 1]


def test_run_explains_an_unstable_measurement(fake_perf_analyzer, tmp_path):
    """A run that does not stabilise raises with perf_analyzer's words and the knobs to turn."""
    with pytest.raises(pa.PerfAnalyzerError) as err:
        pa.run("grpc://127.0.0.1:1", PIPELINE_MODEL, concurrency=[1], max_tokens=8, prompts=["p"], out_dir=tmp_path,
               streaming=True, extra_args=["--fail"])
    message = str(err.value)
    assert "measurement_interval_ms" in message and "Failed to obtain stable measurement" in message
    assert "full log:" in message


# --------------------------------------------------------------------------- load generator


def _requests(endpoint, concurrency, rows, max_tokens=10, model=None):
    """Per-request rows: (start_s, ttft_s, latency_s, error)."""
    return pd.DataFrame([{
        "endpoint": endpoint, "model": model or endpoint, "concurrency": concurrency, "max_tokens": max_tokens,
        "request": i, "start_s": s, "ttft_s": t, "latency_s": lat, "chunks": max_tokens, "responses": max_tokens,
        "output_tokens": 0 if err else max_tokens, "output_chars": 3 * max_tokens, "blocked": False, "error": err,
    } for i, (s, t, lat, err) in enumerate(rows)])


def test_summarize_columns_come_first_and_in_order():
    """The summary starts with exactly SWEEP_COLUMNS."""
    summary = load.summarize(_requests("direct", 1, [(0.0, 0.01, 0.1, "")]))
    assert list(summary.columns[: len(load.SWEEP_COLUMNS)]) == load.SWEEP_COLUMNS
    assert load.SWEEP_COLUMNS == ["endpoint", "concurrency", "max_tokens", "requests", "output_tokens_per_s",
                                  "ttft_p50_ms", "itl_mean_ms", "latency_p50_s", "errors", "responses_per_request"]


def test_summarize_arithmetic():
    """Throughput is tokens over the level's wall time; ITL is (latency − TTFT)/(tokens − 1)."""
    rows = [(0.0, 0.010, 0.100, ""), (0.0, 0.020, 0.190, ""), (0.1, 0.030, 0.300, ""), (0.2, 0.0, 0.05, "boom")]
    summary = load.summarize(_requests("pipeline", 2, rows, max_tokens=10))
    row = summary.iloc[0]
    assert row["requests"] == 4 and row["errors"] == 1
    wall = 0.4  # first start 0.0, last end 0.1 + 0.3
    assert row["wall_s"] == pytest.approx(wall)
    assert row["output_tokens"] == 30
    assert row["output_tokens_per_s"] == pytest.approx(30 / wall)
    assert row["requests_per_s"] == pytest.approx(3 / wall)
    assert row["responses_per_request"] == 10  # the successful requests' streamed responses
    assert row["ttft_p50_ms"] == pytest.approx(20.0)
    itl = [(0.1 - 0.01) / 9, (0.19 - 0.02) / 9, (0.3 - 0.03) / 9]
    assert row["itl_mean_ms"] == pytest.approx(np.mean(itl) * 1e3)
    assert row["latency_p50_s"] == pytest.approx(0.19)
    assert row["latency_p99_s"] == pytest.approx(np.percentile([0.1, 0.19, 0.3], 99))


def test_summarize_one_row_per_level_in_measured_order():
    """Rows are grouped by endpoint, concurrency and max_tokens; endpoints keep their measured order."""
    frame = pd.concat([
        _requests("pipeline", 1, [(0, 0.01, 0.1, "")]), _requests("direct", 1, [(0, 0.01, 0.1, "")]),
        _requests("pipeline", 4, [(0, 0.01, 0.1, "")]), _requests("direct", 4, [(0, 0.01, 0.1, "")]),
    ])
    summary = load.summarize(frame)
    assert list(zip(summary["concurrency"], summary["endpoint"])) == [
        (1, "pipeline"), (1, "direct"), (4, "pipeline"), (4, "direct")]


def test_summarize_reads_back_saved_requests(tmp_path):
    """Errors read back from CSV (empty → NaN) still count as successes; the figures survive a round trip."""
    frame = _requests("direct", 2, [(0.0, 0.01, 0.1, ""), (0.05, 0.02, 0.2, ""), (0.1, 0.0, 0.01, "bad")])
    load.save(frame, load.summarize(frame), tmp_path)
    reread = pd.read_csv(tmp_path / "requests.csv")
    assert reread["error"].isna().sum() == 2
    pd.testing.assert_frame_equal(load.summarize(reread), pd.read_csv(tmp_path / "sweep.csv"), check_dtype=False)
    assert json.loads((tmp_path / "sweep.json").read_text())[0]["errors"] == 1


def test_inter_token_latency_needs_two_tokens():
    """A one-token answer has no inter-token latency."""
    frame = pd.DataFrame({"latency_s": [0.5, 0.5], "ttft_s": [0.1, 0.1], "output_tokens": [1, 5]})
    itl = load.inter_token_latency_s(frame)
    assert math.isnan(itl.iloc[0]) and itl.iloc[1] == pytest.approx(0.1)


def test_default_prompts_without_a_tokenizer_use_llama3_format():
    """Without a tokenizer the prompts carry Llama-3's chat headers, deterministic and varied."""
    prompts = load.default_prompts(20)
    assert len(prompts) == 20
    assert prompts == load.default_prompts(20)
    assert len(set(prompts[:16])) == 16
    for prompt in prompts:
        assert prompt.startswith("<|start_header_id|>user<|end_header_id|>\n\n")
        assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_default_prompts_apply_the_models_template(tiny_model):
    """With the model's folder the prompts are exactly what the pipeline's formatter produces."""
    from kit.pipeline import PipelineRequest, PromptFormatter

    prompts = load.default_prompts(3, tokenizer_path=tiny_model)
    formatter = PromptFormatter.load(str(tiny_model))
    expected = [formatter.format(PipelineRequest(prompt=q, stream=True, sampling={"max_tokens": 1}))
                for q in load.raw_prompts(3)]
    assert prompts == expected
    assert all("<|start_header_id|>assistant<|end_header_id|>" in p for p in prompts)


def test_run_level_rejects_bad_arguments():
    """Zero concurrency, requests or tokens, or no prompts, are refused before connecting."""
    for kwargs in ({"concurrency": 0}, {"requests": 0}, {"max_tokens": 0}, {"prompts": []}):
        args = {"concurrency": 1, "requests": 1, "max_tokens": 1, "prompts": ["p"], **kwargs}
        with pytest.raises(ValueError):
            load.run_level("grpc://127.0.0.1:1", LLM_MODEL, **args)


@pytest.mark.parametrize("concurrency,requests,processes,expected", [
    (8, 16, 1, [(8, list(range(16)))]),
    (5, 10, 2, [(3, [0, 1, 2, 3, 4, 5]), (2, [6, 7, 8, 9])]),
    (256, 512, 8, [(32, list(range(64 * k, 64 * (k + 1)))) for k in range(8)]),
    (2, 4, 8, [(1, [0, 1]), (1, [2, 3])]),      # never more processes than streams
    (4, 2, 4, [(2, [0]), (2, [1])]),             # ... or than requests
])
def test_shares_split_streams_and_requests_evenly(concurrency, requests, processes, expected):
    parts = load.shares(concurrency, requests, processes)
    assert parts == expected
    assert sum(c for c, _ in parts) == concurrency
    assert sorted(i for _, indices in parts for i in indices) == list(range(requests))


def test_process_count():
    assert load.process_count(256, None) == 1
    assert load.process_count(256, 32, 16) == 8
    assert load.process_count(33, 32, 16) == 2
    assert load.process_count(1024, 32, 4) == 4
    assert load.process_count(1, 32, 4) == 1


def test_run_level_joins_process_shares_on_one_clock(monkeypatch):
    """Each share runs with its own concurrency and indices; rows meet on the shared monotonic clock."""
    from concurrent.futures import ThreadPoolExecutor

    seen = []

    async def fake_level(*, concurrency, indices, model, **kwargs):
        seen.append((concurrency, list(indices), kwargs["progress"]))
        base = 100.0 + indices[0]  # shares start at different absolute times
        return [{"request": i, "start": base + 0.5 * n, "ttft_s": 0.1, "latency_s": 1.0, "chunks": 3,
                 "responses": 4, "output_chars": 9, "blocked": False, "error": ""} for n, i in enumerate(indices)]

    monkeypatch.setattr(load, "_run_level_async", fake_level)
    with ThreadPoolExecutor(2) as pool:
        frame = load.run_level("grpc://x:1", LLM_MODEL, concurrency=4, requests=6, max_tokens=5, prompts=["p"],
                               processes=2, pool=pool, endpoint="direct")
    assert sorted(seen) == [(2, [0, 1, 2], False), (2, [3, 4, 5], False)]
    assert frame["request"].tolist() == list(range(6))
    assert frame["start_s"].tolist() == [0.0, 0.5, 1.0, 3.0, 3.5, 4.0]
    assert frame["output_tokens"].tolist() == [5] * 6


def test_sweep_orders_levels_and_counts_requests(monkeypatch, tmp_path):
    """Endpoints run back to back per level, with per-endpoint request counts, and results are saved."""
    calls = []

    def fake_run_level(grpc_url, model, *, concurrency, requests, max_tokens, prompts, endpoint=None, **kwargs):
        calls.append((endpoint, model, concurrency, requests, max_tokens, kwargs.get("progress")))
        return _requests(endpoint, concurrency, [(0.0, 0.01, 0.1, "")] * requests, max_tokens, model)

    monkeypatch.setattr(load, "run_level", fake_run_level)
    per_request, summary = load.sweep(
        "grpc://x:1", {"direct": LLM_MODEL, "blocking": BLOCKING_MODEL}, concurrencies=[1, 4], max_tokens_list=[8],
        requests_per_level=lambda label, c: c if label == "blocking" else 10, prompts=["p"], out_dir=tmp_path,
        warmup=1)
    measured = [c for c in calls if c[5] is not False]  # warm-up calls run without progress bars
    assert [c[:4] for c in measured] == [("direct", LLM_MODEL, 1, 10), ("blocking", BLOCKING_MODEL, 1, 1),
                                         ("direct", LLM_MODEL, 4, 10), ("blocking", BLOCKING_MODEL, 4, 4)]
    assert len(calls) == 6
    assert summary["requests"].tolist() == [10, 1, 10, 4]
    assert len(per_request) == 25
    assert {"sweep.csv", "requests.csv", "sweep.json"} <= {p.name for p in tmp_path.iterdir()}


def test_sweep_stops_when_before_level_says_so(monkeypatch):
    """A failed check before a level ends the sweep there; the levels measured so far are kept."""
    monkeypatch.setattr(load, "run_level", lambda grpc_url, model, *, concurrency, requests, max_tokens, prompts,
                        endpoint=None, **kw: _requests(endpoint, concurrency, [(0.0, 0.01, 0.1, "")] * requests,
                                                       max_tokens, model))
    asked = []

    def before(max_tokens, concurrency):
        asked.append((max_tokens, concurrency))
        return concurrency < 4

    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[1, 2, 4, 8],
                                      max_tokens_list=[8], requests_per_level=4, prompts=["p"], warmup=0,
                                      before_level=before)
    assert asked == [(8, 1), (8, 2), (8, 4)]
    assert summary["concurrency"].tolist() == [1, 2]
    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[1], max_tokens_list=[8],
                                      requests_per_level=4, prompts=["p"], warmup=0, before_level=lambda m, c: False)
    assert per_request.empty and summary.empty
    assert list(summary.columns[: len(load.SWEEP_COLUMNS)]) == load.SWEEP_COLUMNS


def test_sweep_rounds_take_turns_and_join_slices(monkeypatch):
    """With rounds, endpoints alternate slice by slice; each request keeps its prompt; slices join end to end."""
    calls = []

    def fake_run_level(grpc_url, model, *, concurrency, requests, max_tokens, prompts, endpoint=None, **kwargs):
        calls.append((endpoint, requests, prompts[0]))
        return _requests(endpoint, concurrency, [(0.5 * i, 0.1, 0.5, "") for i in range(requests)], max_tokens)

    monkeypatch.setattr(load, "run_level", fake_run_level)
    prompts = ["p0", "p1", "p2", "p3"]
    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL},
                                      concurrencies=[1], max_tokens_list=[8], requests_per_level=4, prompts=prompts,
                                      warmup=0, rounds=2)
    assert calls == [("direct", 2, "p0"), ("pipeline", 2, "p0"), ("direct", 2, "p2"), ("pipeline", 2, "p2")]
    direct = per_request[per_request["endpoint"] == "direct"]
    assert direct["request"].tolist() == [0, 1, 2, 3]
    assert direct["start_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert summary["wall_s"].tolist() == [2.0, 2.0]
    assert summary["output_tokens_per_s"].tolist() == [16.0, 16.0]
    calls.clear()
    load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[4], max_tokens_list=[8], requests_per_level=9,
               prompts=prompts, warmup=0, rounds=4)
    assert [c[1] for c in calls] == [4, 5]  # two slices: a third would hold fewer requests than the concurrency


# --------------------------------------------------------------------------- bench


def _summary(rows):
    """A summary from (endpoint, concurrency, tokens/s, ttft ms) tuples."""
    return pd.DataFrame([{"endpoint": e, "concurrency": c, "max_tokens": 64, "requests": 8, "output_tokens_per_s": t,
                          "ttft_p50_ms": f, "itl_mean_ms": 1.0, "latency_p50_s": 0.1, "errors": 0,
                          "requests_per_s": t / 64, "latency_p99_s": 0.2}
                         for e, c, t, f in rows])


SUMMARY = _summary([
    ("direct", 8, 1000.0, 20.0), ("pipeline", 8, 950.0, 21.2), ("blocking", 8, 130.0, 40.0),
    ("direct", 48, 4000.0, 50.0), ("pipeline", 48, 3800.0, 58.0), ("blocking", 48, 100.0, 900.0),
])


def test_ratios_per_level():
    """Throughput ratios and the TTFT difference are computed per concurrency level."""
    found = bench.ratios(SUMMARY)
    assert found["pipeline/direct throughput at concurrency 48"] == pytest.approx(0.95)
    assert found["pipeline-direct TTFT p50 at concurrency 8"] == pytest.approx(1.2)
    assert found["blocking/direct throughput at concurrency 8"] == pytest.approx(0.13)
    assert found["pipeline/blocking throughput at concurrency 48"] == pytest.approx(38.0)
    assert len(found) == 8


def test_ratio_lines_read_like_the_headline():
    """Ratios print with two decimals, TTFT differences as signed milliseconds."""
    found = bench.ratios(SUMMARY)
    lines = [bench.format_ratio(k, v) for k, v in found.items()]
    assert "pipeline/direct throughput at concurrency 48: 0.95" in lines
    assert "pipeline-direct TTFT p50 at concurrency 8: +1.2 ms" in lines
    assert "blocking/direct throughput at concurrency 8: 0.13" in lines


def test_ratios_without_blocking_or_with_several_budgets():
    """Missing endpoints give no ratio; several max_tokens values are named in the keys."""
    two = pd.concat([_summary([("direct", 1, 100.0, 5.0), ("pipeline", 1, 90.0, 6.0)]).assign(max_tokens=16),
                     _summary([("direct", 1, 200.0, 5.0), ("pipeline", 1, 150.0, 7.0)])])
    found = bench.ratios(two)
    assert found["pipeline/direct throughput at concurrency 1 (max_tokens 16)"] == pytest.approx(0.9)
    assert found["pipeline/direct throughput at concurrency 1 (max_tokens 64)"] == pytest.approx(0.75)
    assert not any(k.startswith("blocking") for k in found)


def test_goals_report_met_and_missed():
    """The three goals are judged from the ratios; a TTFT gap of 8 ms misses its goal."""
    checks = {c["goal"].split()[0] + str(i): c for i, c in enumerate(bench.goals(SUMMARY))}
    met = [c["met"] for c in checks.values()]
    assert met == [True, False, True]
    assert "+8.0 ms" in list(checks.values())[1]["detail"]


def test_compare_gives_blocking_fewer_requests(monkeypatch):
    """The blocking pipeline gets about as many requests as the concurrency; the others get the full count."""
    seen = {}

    def fake_sweep(grpc_url, endpoints, *, requests_per_level, concurrencies, **kwargs):
        seen["endpoints"] = dict(endpoints)
        seen["counts"] = {(label, c): requests_per_level(label, c) for label in endpoints for c in concurrencies}
        seen["streams_per_process"] = kwargs.get("streams_per_process")
        return pd.DataFrame(), pd.DataFrame()

    monkeypatch.setattr(load, "sweep", fake_sweep)
    bench.compare("grpc://x:1", concurrencies=[1, 8, 48], max_tokens=8, requests=lambda c: 3 * c + 10, prompts=["p"])
    assert seen["endpoints"] == {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL, "blocking": BLOCKING_MODEL}
    assert seen["counts"][("pipeline", 48)] == 154
    assert [seen["counts"][("blocking", c)] for c in (1, 8, 48)] == [2, 8, 48]
    assert seen["streams_per_process"] is None
    bench.compare("grpc://x:1", concurrencies=[2], max_tokens=8, requests=4, prompts=["p"], blocking=False,
                  streams_per_process=32)
    assert "blocking" not in seen["endpoints"] and seen["streams_per_process"] == 32


def test_bench_arguments():
    """The bench's options parse into lists and counts; bad levels are refused."""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--concurrency", "8,1,48", "--max-tokens", "64", "--requests", "5",
                              "--no-guard-bench", "--perf-analyzer", "--grpc-url", "grpc://h:1"])
    assert args.concurrency == [1, 8, 48] and args.max_tokens == 64 and args.requests == 5
    assert args.quick and args.no_guard_bench and args.perf_analyzer and args.grpc_url == "grpc://h:1"
    with pytest.raises(SystemExit):
        parser.parse_args(["--concurrency", "0,2"])
    defaults = parser.parse_args([])
    assert bench._settings(defaults)["concurrency"] == [1, 8, 48]
    assert bench._settings(defaults)["max_tokens"] == 64
    assert bench._settings(defaults)["streams_per_process"] is None  # one client process by default
    assert bench._settings(parser.parse_args(["--streams-per-process", "32"]))["streams_per_process"] == 32


# --------------------------------------------------------------------------- plots


def _names(fig):
    return [t.name for t in fig.data]


def _seed(fig):
    traces = [t for t in fig.data if t.name == plots.SEED_LABEL]
    assert len(traces) == 1
    return traces[0]


def test_seed_tables_hold_the_published_numbers():
    """The reference series are the seed's published perf_analyzer tables."""
    assert plots.SEED_CONCURRENCY["latency_avg_s"].tolist() == [31.9, 63.6, 95.9, 126.9]
    assert plots.SEED_CONCURRENCY["throughput_infer_s"].tolist() == [0.0333] * 4
    assert plots.SEED_MAX_TOKENS["max_tokens"].tolist() == [50, 300, 600]
    assert plots.SEED_MAX_TOKENS["throughput_infer_s"].tolist() == [1.22218, 0.205551, 0.099998]
    assert plots.SEED_MAX_TOKENS["latency_avg_s"].tolist() == [0.81, 4.76, 9.51]
    assert "RTX 4090" in plots.SEED_LABEL


def test_latency_vs_concurrency_has_one_line_per_endpoint_and_the_seed():
    """Each endpoint is a line; the seed's latencies are a dashed reference on a log axis."""
    fig = plots.latency_vs_concurrency(SUMMARY)
    assert isinstance(fig, go.Figure)
    assert _names(fig) == ["direct", "pipeline", "blocking", plots.SEED_LABEL]
    assert list(_seed(fig).y) == [31.9, 63.6, 95.9, 126.9]
    assert _seed(fig).line.dash == "dash"
    assert fig.layout.yaxis.type == "log"
    assert list(fig.data[0].x) == [8, 48] and list(fig.data[0].y) == [0.1, 0.1]
    assert plots.SEED_LABEL not in _names(plots.latency_vs_concurrency(SUMMARY, reference=False))


def test_latency_vs_concurrency_accepts_perf_analyzer_rows(tmp_path):
    """perf_analyzer results plot on the same chart, named by model, latency in seconds."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path).assign(model=PIPELINE_MODEL, max_tokens=16)
    fig = plots.latency_vs_concurrency(df)
    assert _names(fig)[0] == PIPELINE_MODEL
    assert list(fig.data[0].y) == pytest.approx([0.047507, 0.066649], abs=1e-5)


def test_throughput_vs_concurrency_panels():
    """Both metrics side by side; the seed's infer/s sits on the requests panel only."""
    fig = plots.throughput_vs_concurrency(SUMMARY)
    seed = _seed(fig)
    assert seed.xaxis == "x2" and list(seed.y) == [0.0333] * 4
    tokens = [t for t in fig.data if t.name == "pipeline" and t.xaxis == "x"][0]
    assert list(tokens.y) == [950.0, 3800.0]
    only_tokens = plots.throughput_vs_concurrency(SUMMARY, metric="output_tokens_per_s")
    assert plots.SEED_LABEL not in _names(only_tokens)
    only_requests = plots.throughput_vs_concurrency(SUMMARY, metric="requests_per_s")
    assert plots.SEED_LABEL in _names(only_requests)
    with pytest.raises(ValueError):
        plots.throughput_vs_concurrency(SUMMARY, metric="watts")


def test_latency_vs_max_tokens_uses_the_lowest_concurrency():
    """The max_tokens chart compares at one concurrency, with the seed's 50/300/600 tokens."""
    frame = pd.concat([_summary([("direct", 1, 100.0, 5.0)]).assign(max_tokens=m, latency_p50_s=m / 100)
                       for m in (16, 64)] + [_summary([("direct", 4, 100.0, 5.0)]).assign(max_tokens=16)])
    fig = plots.latency_vs_max_tokens(frame)
    assert list(fig.data[0].x) == [16, 64] and list(fig.data[0].y) == [0.16, 0.64]
    assert list(_seed(fig).x) == [50, 300, 600]
    assert "concurrency 1" in fig.layout.title.text


def test_distributions_have_a_box_per_endpoint_without_errors():
    """TTFT and ITL boxes hold only successful requests, in milliseconds."""
    frame = pd.concat([_requests("direct", 1, [(0, 0.010, 0.1, ""), (0.1, 0.02, 0.2, "")]),
                       _requests("pipeline", 1, [(0, 0.012, 0.1, ""), (0.1, 0.0, 0.0, "failed")])])
    ttft = plots.ttft_distribution(frame)
    assert [type(t).__name__ for t in ttft.data] == ["Box", "Box"]
    assert _names(ttft) == ["direct", "pipeline"]
    assert list(ttft.data[1].y) == pytest.approx([12.0])
    itl = plots.itl_distribution(frame)
    assert list(itl.data[0].y) == pytest.approx([(0.1 - 0.01) / 9 * 1e3, (0.2 - 0.02) / 9 * 1e3])


def test_endpoints_comparison_puts_three_endpoints_on_one_chart():
    """Tokens/s and TTFT bars for each endpoint, one legend entry per endpoint."""
    fig = plots.endpoints_comparison(SUMMARY)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 6
    assert [t.name for t in bars if t.showlegend is not False] == ["direct", "pipeline", "blocking"]
    assert list(bars[0].x) == ["8", "48"]


def test_perf_analyzer_sweep_by_concurrency_and_by_max_tokens(tmp_path):
    """Throughput bars plus p50/p99 latency lines; the x axis follows what varies."""
    path = tmp_path / "out.csv"
    path.write_text(RECORDED_CSV)
    df = pa.parse_csv(path).assign(model=PIPELINE_MODEL, max_tokens=16, latency_measures="first_response")
    fig = plots.perf_analyzer_sweep(df)
    assert [type(t).__name__ for t in fig.data] == ["Bar", "Scatter", "Scatter"]
    assert list(fig.data[0].x) == ["1", "2"]
    assert "first response" in fig.layout.title.text
    by_tokens = df.assign(concurrency=1, max_tokens=[50, 300])
    assert list(plots.perf_analyzer_sweep(by_tokens).data[0].x) == ["50", "300"]


def test_to_html_embeds_plotly_inline():
    """The page works offline: plotly.js is inline, there is no external script."""
    page = plots.to_html(plots.latency_vs_concurrency(SUMMARY), plots.endpoints_comparison(SUMMARY), title="bench")
    assert "<script src=" not in page
    assert 'src="https://cdn.plot.ly' not in page
    assert page.count("Plotly.newPlot") == 2
    assert len(page) > 1_000_000  # plotly.js itself
    assert "<title>bench</title>" in page
