"""kit.triton_models.engine_metrics: vLLM statistics → Triton metrics (Triton's module replaced by a stand-in)."""

from __future__ import annotations

import importlib
import sys
import time
import types
from types import SimpleNamespace

import pytest


class FakeMetric:
    def __init__(self, family, labels, buckets=None):
        self.family, self.labels, self.buckets = family, labels, buckets
        self.calls = []

    def increment(self, value):
        self.calls.append(("increment", value))

    def set(self, value):
        self.calls.append(("set", value))

    def observe(self, value):
        self.calls.append(("observe", value))


class FakeFamily:
    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
    made: dict = {}

    def __init__(self, name, description, kind):
        self.name, self.kind = name, kind

    def Metric(self, labels, buckets=None):  # noqa: N802 - Triton's spelling
        metric = FakeMetric(self, labels, buckets)
        FakeFamily.made[self.name] = metric
        return metric


@pytest.fixture
def engine_metrics(monkeypatch):
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.MetricFamily = FakeFamily
    stand_in.Logger = SimpleNamespace(log_warn=lambda message: None)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    monkeypatch.delitem(sys.modules, "kit.triton_models.engine_metrics", raising=False)
    FakeFamily.made = {}
    module = importlib.import_module("kit.triton_models.engine_metrics")
    yield module
    sys.modules.pop("kit.triton_models.engine_metrics", None)


def iteration(**changes):
    stats = dict(
        num_prompt_tokens=6, num_generation_tokens=3, num_preempted_reqs=0,
        time_to_first_tokens_iter=[0.02], inter_token_latencies_iter=[0.004, 0.006], n_params_iter=[2],
        finished_requests=[SimpleNamespace(e2e_latency=0.5, num_prompt_tokens=6, num_generation_tokens=16,
                                           max_tokens_param=16)],
    )
    return SimpleNamespace(**{**stats, **changes})


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the flusher thread did not report in time"
        time.sleep(0.01)


def test_one_step_becomes_counters_histograms_and_gauges(engine_metrics):
    """A step's statistics reach NVIDIA's counters and histograms and the kit's gauges, via the flusher."""
    metrics = engine_metrics.EngineMetrics({"model": "m"}, max_model_len=2048)
    metrics.record(SimpleNamespace(num_running_reqs=3, num_waiting_reqs=1), iteration())
    made = FakeFamily.made
    time.sleep(0.1)
    assert made["vllm:prompt_tokens_total"].calls == []  # nothing reaches Triton before start()
    metrics.start()
    wait_for(lambda: made["vllm:e2e_request_latency_seconds"].calls)
    assert made["vllm:prompt_tokens_total"].calls == [("increment", 6)]
    assert made["vllm:generation_tokens_total"].calls == [("increment", 3)]
    assert made["vllm:num_requests_running"].calls == [("set", 3)]
    assert made["vllm:time_per_output_token_seconds"].calls == [("observe", 0.004), ("observe", 0.006)]
    assert made["vllm:request_params_n"].calls == [("observe", 2.0)]
    assert made["vllm:request_params_max_tokens"].calls == [("observe", 16.0)]
    assert made["vllm:e2e_request_latency_seconds"].calls == [("observe", 0.5)]
    assert made["vllm:num_preemptions_total"].calls == []  # zero increments are skipped
    metrics.close()


def test_histograms_carry_buckets(engine_metrics):
    """Every histogram is made with buckets; token counts use 1-2-5 buckets up to the context."""
    metrics = engine_metrics.EngineMetrics({"model": "m"}, max_model_len=100)
    histograms = {n: m for n, m in FakeFamily.made.items() if m.family.kind == "histogram"}
    assert len(histograms) == 7 and all(m.buckets for m in histograms.values())
    assert histograms["vllm:request_prompt_tokens"].buckets == [1, 2, 5, 10, 20, 50, 100]
    assert histograms["vllm:time_to_first_token_seconds"].buckets[0] == 0.001
    metrics.close()


def test_flushes_do_not_repeat_and_close_reports_what_is_pending(engine_metrics):
    """A flush hands each value over once; close() flushes the rest, then drops the metrics."""
    metrics = engine_metrics.EngineMetrics({"model": "m"}, max_model_len=2048)
    counter = FakeFamily.made["vllm:prompt_tokens_total"]
    metrics.start()
    metrics.record(None, iteration())
    wait_for(lambda: counter.calls)
    metrics.flush()
    metrics.record(None, iteration(num_prompt_tokens=4))
    metrics.close()
    assert counter.calls == [("increment", 6), ("increment", 4)]
    assert not metrics.metrics.families and not metrics.thread.is_alive()


def test_buckets_1_2_5(engine_metrics):
    """1, 2, 5, 10, ... never past the maximum."""
    assert engine_metrics.buckets_1_2_5(1) == [1]
    assert engine_metrics.buckets_1_2_5(2048) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


def test_a_step_with_only_scheduler_statistics_updates_the_gauges(engine_metrics):
    """When the engine goes idle vLLM reports scheduler statistics alone; the gauges must still fall to 0."""
    metrics = engine_metrics.EngineMetrics({"model": "m"}, max_model_len=2048)
    metrics.start()
    running = FakeFamily.made["vllm:num_requests_running"]
    metrics.record(SimpleNamespace(num_running_reqs=2, num_waiting_reqs=0), iteration())
    metrics.record(SimpleNamespace(num_running_reqs=0, num_waiting_reqs=0), None)
    wait_for(lambda: running.calls and running.calls[-1] == ("set", 0))
    metrics.close()
