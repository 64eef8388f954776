"""Unit tests of kit.perf.head_to_head: engine flags, vllm bench serve's results as records, ratios, goals."""

from __future__ import annotations

import json
import math

from kit.perf import head_to_head as h2h
from kit.perf.head_to_head import ServeResult, Workload


def _result(target, concurrency, tok_s, ttft, itl=5.0, failed=0):
    return ServeResult(target, concurrency, 16, failed, 1.0, 16 * 32, tok_s, 1.0, ttft, ttft, ttft, itl, itl, itl, itl)


def test_engine_flags_mirror_model_json():
    """model.json's engine arguments become vllm serve flags: values, booleans both ways, JSON for objects."""
    flags = h2h.engine_flags({"model": "/m", "max_num_seqs": 128, "enforce_eager": False, "enable_prefix_caching": True,
                              "load_format": "dummy", "compilation_config": {"level": 0}, "seed": None})
    assert flags == ["--max-num-seqs", "128", "--no-enforce-eager", "--enable-prefix-caching",
                     "--load-format", "dummy", "--compilation-config", '{"level": 0}']


def test_vllm_serve_gets_the_model_folder_and_the_kit_llm_name():
    """vllm serve runs vLLM's own CLI on the same model folder, under the kit LLM's served name."""
    cmd = h2h.VllmServe({"model": "/models/tiny", "dtype": "float32"}, port=1234).command()
    assert cmd[1:5] == ["-m", "kit.perf.vllm_cli", "serve", "/models/tiny"]
    assert cmd[cmd.index("--served-model-name") + 1] == "llama3-8b-instruct"
    assert cmd[-2:] == ["--dtype", "float32"]


def test_bench_command_is_vllm_bench_serve_with_a_fixed_output_length(tmp_path):
    """Each level: streamed chat completions, random prompts, ignore_eos, the level's concurrency, saved JSON."""
    prompts = h2h.write_prompts(tmp_path / "prompts.jsonl", 20)
    workload = Workload(tokenizer="/tok", prompts_file=str(prompts), concurrency=(4,), output_len=32)
    cmd = h2h.bench_command("http://x:1", "llama_bls_ensemble", workload, 4, tmp_path, "r.json", api_key="k")
    assert cmd[3:5] == ["bench", "serve"]
    args = dict(zip(cmd, cmd[1:], strict=False))  # each flag with the word after it
    assert args["--backend"] == "openai-chat" and args["--dataset-name"] == "custom"
    assert args["--dataset-path"] == str(prompts) and "--skip-chat-template" in cmd
    assert args["--max-concurrency"] == "4" and args["--num-prompts"] == "16" and args["--custom-output-len"] == "32"
    assert "--ignore-eos" in cmd and args["--header"] == "Authorization=Bearer k"
    lines = prompts.read_text().splitlines()
    assert len(lines) == 20 and all(json.loads(line)["prompt"] for line in lines)


def test_results_come_from_vllm_bench_serve_json():
    """The saved JSON's percentile keys fill the record; missing ones are NaN."""
    data = {"completed": 16, "failed": 0, "duration": 2.0, "output_throughput": 256.0, "request_throughput": 8.0,
            "p50_ttft_ms": 10.0, "p90_ttft_ms": 12.0, "p99_ttft_ms": 15.0, "p50_itl_ms": 3.0, "p90_itl_ms": 4.0,
            "p99_itl_ms": 6.0}
    result = ServeResult.from_bench_json("kit-llm", 4, data)
    assert result.output_tokens_per_s == 256.0 and result.ttft_p99_ms == 15.0 and result.itl_p50_ms == 3.0
    assert result.output_tokens == 0 and h2h.miscounted([result], 32) == [result]
    assert math.isnan(result.tpot_p50_ms)


def test_ratios_and_goals_compare_each_level_with_vllm_serve():
    """Ratios are kit / vllm serve at the same concurrency; the goals name the worst level."""
    results = [_result("vllm-serve", 1, 100, 20), _result("kit-pipeline", 1, 95, 25),
               _result("vllm-serve", 16, 1000, 40), _result("kit-pipeline", 16, 800, 70),
               _result("kit-llm", 16, 990, 41), _result("kit-llm", 64, 1, 1)]
    found = h2h.ratios(results)
    assert [(r.target, r.concurrency) for r in found] == [("kit-llm", 16), ("kit-pipeline", 1), ("kit-pipeline", 16)]
    assert found[2].throughput == 0.8 and found[2].ttft_p50_diff_ms == 30
    throughput, ttft = h2h.goals(found)
    assert not throughput.met and "0.80 at concurrency 16" in throughput.detail
    assert not ttft.met and "+30.0 ms" in ttft.detail


def test_saved_results_load_back_as_records(tmp_path):
    """save writes JSON and CSV; load gives the same records and ratios."""
    results = [_result("vllm-serve", 1, 100, 20), _result("kit-llm", 1, 90, 22)]
    path = h2h.save(results, tmp_path, {"input_len": 64})
    loaded, found = h2h.load(path.parent)
    assert loaded == results and found == h2h.ratios(results)
    assert (tmp_path / "head_to_head.csv").read_text().startswith("target,concurrency")


def test_plot_shows_every_target_in_three_panels():
    """The notebook's figure: one bar series per target in each of tok/s, TTFT and ITL."""
    from dataclasses import asdict

    import pandas as pd

    from kit import plots

    results = [_result(t, c, 100, 20) for t in ("vllm-serve", "kit-llm", "kit-pipeline") for c in (1, 4)]
    fig = plots.head_to_head(pd.DataFrame([asdict(r) for r in results]))
    assert len(fig.data) == 9 and {t.name for t in fig.data} == {"vllm-serve", "kit-llm", "kit-pipeline"}
