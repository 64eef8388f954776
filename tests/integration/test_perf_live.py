"""kit.perf against the live server: a tiny perf_analyzer sweep and a tiny load sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.perf import bench, headline, load
from kit.perf import perf_analyzer as pa
from kit.perf.prompts import default_prompts

pytestmark = pytest.mark.integration

MAX_TOKENS = 8
REQUESTS = 4


@pytest.fixture(scope="module")
def prompts(tiny_model):
    return default_prompts(REQUESTS, tokenizer_path=tiny_model)


def test_perf_analyzer_sweep_through_the_pipeline(server, prompts, tmp_path):
    """The real perf_analyzer measures the pipeline at concurrency 1 and 2 over gRPC streaming."""
    df = pa.run(server.grpc_address, PIPELINE_MODEL, concurrency=[1, 2], max_tokens=MAX_TOKENS, prompts=prompts,
                out_dir=tmp_path, request_count=12, prompt_is_formatted=True)
    assert df["concurrency"].tolist() == [1, 2]
    assert (df["model"] == PIPELINE_MODEL).all() and (df["max_tokens"] == MAX_TOKENS).all()
    assert (df["throughput_infer_s"] > 0).all()
    assert (df["latency_p50_ms"] > 0).all() and (df["latency_avg_ms"] > 0).all()
    assert (df["response_throughput_s"] >= df["throughput_infer_s"]).all()  # streamed: several responses each
    assert (df["latency_measures"] == "first_response").all()  # perf_analyzer saw a decoupled model
    log = (tmp_path / f"{PIPELINE_MODEL}_mt{MAX_TOKENS}_c2.log").read_text()
    assert "--streaming" in log and "Request concurrency: 2" in log


def test_load_sweep_direct_and_pipeline(server, prompts, tmp_path):
    """The same requests stream through the LLM and the pipeline; every token is accounted for.

    Concurrency 1 runs in this process, concurrency 2 in two client processes (one stream each).
    """
    per_request, summary = load.sweep(
        server.grpc_address, {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL}, concurrencies=[1, 2],
        max_tokens_list=[MAX_TOKENS], requests_per_level=REQUESTS, prompts=prompts, out_dir=tmp_path,
        progress=False, warmup=1, streams_per_process=1)
    assert len(per_request) == 2 * 2 * REQUESTS
    assert (per_request["error"] == "").all(), per_request["error"].unique()
    assert (per_request["ttft_s"] <= per_request["latency_s"]).all()
    assert (per_request["chunks"] >= 1).all()
    assert not per_request["blocked"].any()
    for _, level in per_request.groupby(["endpoint", "concurrency"]):
        assert level["output_tokens"].sum() == MAX_TOKENS * REQUESTS
        assert sorted(level["request"]) == list(range(REQUESTS))
    assert list(summary.columns[: len(load.SWEEP_COLUMNS)]) == load.SWEEP_COLUMNS
    assert len(summary) == 4
    assert (summary["errors"] == 0).all()
    assert (summary["output_tokens_per_s"] > 0).all() and (summary["ttft_p50_ms"] > 0).all()
    assert (summary["itl_mean_ms"] >= 0).all()
    saved = pd.read_csv(tmp_path / "sweep.csv")
    assert list(saved.columns[: len(load.SWEEP_COLUMNS)]) == load.SWEEP_COLUMNS


def test_bench_compare_includes_the_blocking_pipeline(server, prompts):
    """The bench compares the three endpoints in one run and derives its ratios from real numbers."""
    per_request, summary = bench.compare(server.grpc_address, concurrencies=[2], max_tokens=MAX_TOKENS, requests=2,
                                         prompts=prompts, progress=False, warmup=0)
    assert summary["endpoint"].tolist() == ["direct", "pipeline", "blocking"]
    assert (summary["errors"] == 0).all()
    assert per_request.groupby("endpoint")["output_tokens"].sum().to_dict() == {
        "blocking": 2 * MAX_TOKENS, "direct": 2 * MAX_TOKENS, "pipeline": 2 * MAX_TOKENS}
    found = {(r.numerator, r.denominator): r.value for r in headline.ratios(summary) if r.metric == "throughput"}
    assert found[("pipeline", "direct")] > 0 and found[("blocking", "direct")] > 0
