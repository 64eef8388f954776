"""kit.perf.perf_analyzer: CSV parsing, input data, the command line and the binary's set-up."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from perfdata import RECORDED_CSV, RECORDED_VERBOSE_CSV

from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import SetupError
from kit.perf import perf_analyzer as pa

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
