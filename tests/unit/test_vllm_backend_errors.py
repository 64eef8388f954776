"""Pure helpers of kit.triton_models.vllm_backend (Triton's Python module replaced by a stand-in)."""

from __future__ import annotations

import importlib
import sys
import types

import pytest


@pytest.fixture
def backend(monkeypatch):
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    for name in ("kit.triton_models.tensors", "kit.triton_models.vllm_backend"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("kit.triton_models.vllm_backend")
    for name in ("kit.triton_models.tensors", "kit.triton_models.vllm_backend"):
        sys.modules.pop(name, None)  # nobody else gets the stand-in's version


class VLLMClientError(Exception):
    pass


class VLLMValidationError(Exception):
    pass


@pytest.mark.parametrize(("errors", "expected"), [
    (types.SimpleNamespace(VLLMClientError=VLLMClientError), (ValueError, VLLMClientError)),  # vLLM 0.3x
    (types.SimpleNamespace(VLLMValidationError=VLLMValidationError), (ValueError, VLLMValidationError)),  # 0.24
    (types.SimpleNamespace(), (ValueError,)),
], ids=["client-error", "validation-error", "neither"])
def test_rejections_are_named_as_the_installed_vllm_names_them(backend, errors, expected):
    assert backend._rejection_errors(errors) == expected


def test_the_installed_vllm_has_a_rejection_class_of_its_own(backend):
    """The kit's pinned vLLM has at least one of the two: a third spelling fails here, not on a GPU host."""
    assert len(backend._rejection_errors(importlib.import_module("vllm.exceptions"))) >= 2


def test_the_environment_is_frozen_where_vllm_can_freeze_it(backend):
    calls = []
    assert backend._cache_environment(types.SimpleNamespace(enable_envs_cache=lambda: calls.append(1)))
    assert calls == [1]
    assert not backend._cache_environment(types.SimpleNamespace())  # an older vLLM: nothing to call


def test_the_installed_vllm_can_freeze_its_environment():
    """Checked without calling it: freezing here would hide later environment changes from other tests."""
    assert callable(importlib.import_module("vllm.envs").enable_envs_cache)
