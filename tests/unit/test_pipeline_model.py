"""Pure parts of kit.triton_models.pipeline (Triton's module replaced by a stand-in)."""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
import pytest

MODULES = ("kit.triton_models.pipeline", "kit.triton_models.vllm_backend", "kit.triton_models.tensors",
           "kit.triton_models.engine_metrics")


class FakeTensor:
    def __init__(self, value):
        self.value = value

    def as_numpy(self):
        return np.array([self.value], dtype=object if isinstance(self.value, bytes) else None)


@pytest.fixture
def pipeline(monkeypatch):
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    stand_in.get_output_tensor_by_name = lambda response, name: (
        FakeTensor(response[name]) if name in response else None
    )
    for name in MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    yield importlib.import_module("kit.triton_models.pipeline")
    for name in MODULES:
        sys.modules.pop(name, None)  # nobody else gets the stand-in's versions


def test_llm_extras_merge_the_responses_between_two_pipeline_responses(pipeline):
    """Token counts add up, logprobs join, and only the final pipeline response carries the finish reason."""
    extras = pipeline.LLMExtras(["finish_reason", "num_input_tokens", "num_output_tokens", "logprobs"])
    extras.add({"finish_reason": b"None", "num_input_tokens": 9, "num_output_tokens": 2,
                "logprobs": json.dumps([{"1": {}}, {"2": {}}]).encode()})
    extras.add({"finish_reason": b"length", "num_input_tokens": 9, "num_output_tokens": 1,
                "logprobs": json.dumps([{"3": {}}]).encode()})
    first = extras.take()
    assert first == {"finish_reason": "None", "num_input_tokens": 9, "num_output_tokens": 3,
                     "logprobs": json.dumps([{"1": {}}, {"2": {}}, {"3": {}}])}
    last = extras.take(final=True)
    assert last == {"finish_reason": "length", "num_input_tokens": 9, "num_output_tokens": 0, "logprobs": "[]"}


def test_llm_extras_report_only_what_was_asked(pipeline):
    """A request that asked for nothing gets no optional outputs, whatever the LLM sent."""
    extras = pipeline.LLMExtras([])
    extras.add({"num_output_tokens": 4})
    assert extras.take(final=True) == {}


def _aborting_model(pipeline, tmp_path):
    model = pipeline.TritonPythonModel()
    model.name, model.llm_streams = "llama_bls_ensemble", {}
    model.aborts = pipeline.aborts.AbortMailbox(tmp_path)
    return model


def test_without_bls_cancel_the_llm_request_is_aborted_through_the_folder_not_a_second_bls_request(
        pipeline, tmp_path, monkeypatch):
    """On Triton 2.51 (no cancel() on BLS streams) the abort is a file the LLM reads, even before
    exec() returned; a request that already finished is left alone."""
    monkeypatch.setattr(pipeline.pb_utils, "InferenceRequest", None, raising=False)  # no BLS request may be built
    model = _aborting_model(pipeline, tmp_path)
    model.llm_streams = {"before-exec": None, "streaming": iter(())}
    for request_id in ("before-exec", "streaming", "finished"):
        model._abort_llm(request_id)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before-exec", "streaming"]


def test_with_bls_cancel_the_stream_is_cancelled_and_nothing_is_posted(pipeline, tmp_path):
    class Stream:
        cancelled = False

        def cancel(self):
            self.cancelled = True

    model = _aborting_model(pipeline, tmp_path)
    model.llm_streams = {"r": Stream()}
    model._abort_llm("r")
    assert model.llm_streams["r"].cancelled and list(tmp_path.iterdir()) == []


def test_an_abort_that_cannot_be_written_is_logged_and_the_stream_runs_out(pipeline, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(pipeline.pb_utils, "Logger", types.SimpleNamespace(log_warn=warnings.append), raising=False)
    (tmp_path / "file").write_text("not a folder")
    model = _aborting_model(pipeline, tmp_path / "file")
    model.llm_streams = {"r": None}
    model._abort_llm("r")
    assert len(warnings) == 1 and "cannot abort LLM request r" in warnings[0]
