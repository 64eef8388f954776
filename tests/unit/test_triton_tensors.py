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
