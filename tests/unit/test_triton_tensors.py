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


def test_cancel_check_is_due_first_then_at_most_every_interval(tensors, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tensors.time, "monotonic", lambda: now[0])
    check = tensors.CancelCheck()
    assert check.due()  # the first token is always checked
    assert not check.due()
    now[0] += tensors.CANCEL_CHECK_S / 2
    assert not check.due()
    now[0] += tensors.CANCEL_CHECK_S / 2
    assert check.due()
    assert not check.due()


def test_config_parameters_reads_string_values(tensors):
    config = {"parameters": {"a": {"string_value": "x"}, "b": {}}}
    assert tensors.config_parameters(config) == {"a": "x", "b": ""}
    assert tensors.config_parameters({}) == {}
