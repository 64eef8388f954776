"""Pure helpers of kit.triton_models.tensors (Triton's Python module replaced by a stand-in)."""

from __future__ import annotations

import importlib
import sys
import types

import pytest


@pytest.fixture
def tensors(monkeypatch):
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    monkeypatch.delitem(sys.modules, "kit.triton_models.tensors", raising=False)
    yield importlib.import_module("kit.triton_models.tensors")
    sys.modules.pop("kit.triton_models.tensors", None)  # nobody else gets the stand-in's version


def test_config_parameters_reads_string_values(tensors):
    config = {"parameters": {"a": {"string_value": "x"}, "b": {}}}
    assert tensors.config_parameters(config) == {"a": "x", "b": ""}
    assert tensors.config_parameters({}) == {}


@pytest.fixture
def pipeline_module(monkeypatch, tensors):
    """kit.triton_models.pipeline with the stand-in Triton module (for its pure helpers only)."""
    monkeypatch.delitem(sys.modules, "kit.triton_models.pipeline", raising=False)
    monkeypatch.delitem(sys.modules, "kit.triton_models.vllm_backend", raising=False)
    yield importlib.import_module("kit.triton_models.pipeline")
    sys.modules.pop("kit.triton_models.pipeline", None)
    sys.modules.pop("kit.triton_models.vllm_backend", None)


def test_iterator_keeper_releases_only_after_the_grace_period(pipeline_module, monkeypatch):
    """Finished BLS iterators outlive the stub's own reference; later calls let go of expired ones."""
    import gc
    import weakref

    now = [50.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: now[0])

    class Iterator:  # stands for a BLS response iterator
        pass

    keeper = pipeline_module.IteratorKeeper()
    first, second = Iterator(), Iterator()
    alive = [weakref.ref(first), weakref.ref(second)]
    keeper.keep(first)
    now[0] += keeper.GRACE_S / 2
    keeper.keep(second)
    del first, second
    gc.collect()
    assert all(ref() is not None for ref in alive) and len(keeper) == 2  # the caller's drop is not the last
    now[0] += keeper.GRACE_S / 2
    keeper.keep()
    gc.collect()
    assert alive[0]() is None and alive[1]() is not None and len(keeper) == 1
    keeper.clear()
    gc.collect()
    assert alive[1]() is None and len(keeper) == 0


def test_guard_from_parameters_reads_policy_and_actions(pipeline_module):
    """The pipeline's guard takes the policy and per-category actions from its config parameters."""
    guard = pipeline_module.guard_from_parameters({"policy": "better_profanity", "actions": '{"topic": "count"}'})
    assert guard.policy == "better_profanity" and guard.actions["topic"] == "count"
    assert pipeline_module.guard_from_parameters({}).policy == "default"


def test_guard_metrics_label_each_category_and_direction(pipeline_module, monkeypatch):
    """GuardMetrics makes one kit_guard_matches_total series per looked-for category and direction."""
    made = {}

    class Family:  # stands for pb_utils.MetricFamily
        COUNTER = "counter"

        def __init__(self, name, description, kind):
            self.name = name

        def Metric(self, labels):  # noqa: N802 - Triton's name
            metric = types.SimpleNamespace(total=0.0, labels=labels)
            metric.increment = lambda value: setattr(metric, "total", metric.total + value)
            made[(self.name, tuple(sorted(labels.items())))] = metric
            return metric

    monkeypatch.setattr(pipeline_module.pb_utils, "MetricFamily", Family, raising=False)
    metrics = pipeline_module.GuardMetrics("m", {"obscenity": "block", "insult": "count", "topic": "allow"})
    try:
        metrics.add(("input", "obscenity"))
        metrics.add(("output", "insult"), 2)
        metrics.flush()
    finally:
        metrics.close()
    series = {dict(k[1])["category"] + "/" + dict(k[1])["where"]: m for k, m in made.items()
              if k[0] == "kit_guard_matches_total"}
    assert set(series) == {"obscenity/input", "obscenity/output", "insult/input", "insult/output"}
    assert series["obscenity/input"].total == 1 and series["insult/output"].total == 2
    assert series["insult/output"].labels["action"] == "count"
