"""kit.metrics: Prometheus text parsed with names kept as written, and the scraper's errors."""

from pathlib import Path

import pytest

from kit import metrics
from kit.exceptions import ServerError

TEXT = """\
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="llama_bls_ensemble",version="1"} 12
nv_inference_count{model="llama3-8b-instruct",version="1"} 30
kit_guard_time_us_total{model="llama_bls_ensemble",version="1"} 345.5
vllm:num_requests_running{model_name="x"} 0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="x",} 2
odd{a="say \\"hi\\", then go\\\\",b=""} +Inf 1700000000000
plain 3e2
"""


def test_parse_keeps_names_and_labels_as_written():
    """Triton's counters keep their names (no `_total` added); labels unescape; trailing commas and timestamps pass."""
    samples = metrics.parse(TEXT)
    assert [s.name for s in samples][:3] == ["nv_inference_count", "nv_inference_count", "kit_guard_time_us_total"]
    odd = next(s for s in samples if s.name == "odd")
    assert odd.labels == {"a": 'say "hi", then go\\', "b": ""} and odd.value == float("inf")
    assert samples[-1].key == "plain" and samples[-1].value == 300.0
    assert samples[0].key == 'nv_inference_count{model="llama_bls_ensemble",version="1"}'
    assert metrics.parse(odd.key + " 1")[0].labels == odd.labels  # a key reads back as the same series


def test_totals_sum_matching_series():
    """total() sums the samples of one name whose labels match; no match is 0.0."""
    samples = metrics.parse(TEXT)
    assert metrics.total(samples, "nv_inference_count") == 42
    assert metrics.total(samples, "nv_inference_count", model="llama_bls_ensemble") == 12
    assert metrics.totals(samples, metrics.GUARD_COUNTERS, model="llama_bls_ensemble") == {
        "kit_guard_prompts_blocked_total": 0.0, "kit_guard_words_censored_total": 0.0,
        "kit_guard_time_us_total": 345.5}


@pytest.mark.parametrize("line", ["no value", 'name{a="unclosed} 1', "name{a=1} 2", "name notanumber"])
def test_parse_refuses_what_is_not_prometheus_text(line):
    """A line that is not a sample is a ValueError naming its line number."""
    with pytest.raises(ValueError, match="line 2"):
        metrics.parse("ok 1\n" + line + "\n")


def test_scrape_names_the_fix_when_nothing_answers():
    """No server on the metrics port: a ServerError that says how to check the server."""
    with pytest.raises(ServerError, match="kit status"):
        metrics.scrape("http://127.0.0.1:1", timeout=2)


def test_guard_counters_are_the_ones_the_pipeline_declares():
    """GUARD_COUNTERS names exactly the counters the pipeline model exports."""
    source = (Path(metrics.__file__).parent / "triton_models" / "pipeline.py").read_text()
    for name in metrics.GUARD_COUNTERS:
        assert f'"{name}"' in source
