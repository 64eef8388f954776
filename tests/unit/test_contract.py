"""kit.contract: each model's tensors, declared once."""

from __future__ import annotations

import pytest

from kit import contract
from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL, POSTPROCESS_MODEL


class FakeAutoComplete:
    """The three methods of Triton's auto-complete config object that the contract uses."""

    def __init__(self, inputs=(), outputs=()):
        self.config = {"input": list(inputs), "output": list(outputs)}

    def as_dict(self):
        return self.config

    def add_input(self, entry):
        self.config["input"].append(entry)

    def add_output(self, entry):
        self.config["output"].append(entry)


def test_a_bare_config_gets_every_tensor_of_the_contract():
    """NVIDIA's two-line sample config declares no tensor: all of the LLM's are added, as declared."""
    config = FakeAutoComplete()
    contract.LLM.complete(config)
    assert [t["name"] for t in config.config["input"]] == [t.name for t in contract.LLM.inputs]
    assert config.config["output"][0] == {"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}
    assert {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True} in config.config["input"]


def test_tensors_the_config_declares_are_left_alone():
    """A tensor already in config.pbtxt is not added again (the user's declaration wins)."""
    mine = {"name": "text_input", "data_type": "TYPE_STRING", "dims": [-1]}
    config = FakeAutoComplete(inputs=[mine])
    contract.LLM.complete(config)
    assert [t for t in config.config["input"] if t["name"] == "text_input"] == [mine]


def test_pbtxt_renders_each_tensor_on_one_line():
    """config.pbtxt blocks: name, TYPE_ data type, dims, and optional only where true."""
    text = contract.POSTPROCESS.pbtxt()
    assert text.splitlines() == [
        "input [",
        '  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] }',
        "]",
        "output [",
        '  { name: "text_output" data_type: TYPE_STRING dims: [ 1 ] },',
        '  { name: "censored_words" data_type: TYPE_INT32 dims: [ 1 ] }',
        "]",
    ]


def test_doc_lists_every_tensor_with_its_type():
    """The docstring table names every input and output with its data type."""
    doc = contract.PIPELINE.doc()
    for tensor in contract.PIPELINE.inputs + contract.PIPELINE.outputs:
        assert f"``{tensor.name}`` {tensor.dtype}" in doc


def test_lookup_by_name_and_by_model():
    """input()/output() find a tensor or raise KeyError; for_model maps the repository's models."""
    assert contract.LLM.input("stream").wire_type == "BOOL"
    assert contract.LLM.input("sampling_parameters").wire_type == "BYTES"
    with pytest.raises(KeyError, match="max_tokens"):
        contract.LLM.input("max_tokens")
    assert contract.for_model(LLM_MODEL) is contract.LLM
    assert contract.for_model(POSTPROCESS_MODEL) is contract.POSTPROCESS
    assert contract.for_model(PIPELINE_MODEL) is contract.for_model(BLOCKING_MODEL) is contract.PIPELINE


def test_names_shared_between_models_have_one_type():
    """A tensor name means the same type in every model, so the client can type it by name."""
    seen = {}
    for model in (contract.LLM, contract.POSTPROCESS, contract.PIPELINE):
        for tensor in model.inputs + model.outputs:
            assert seen.setdefault(tensor.name, tensor.dtype) == tensor.dtype, tensor.name


def test_the_readme_shows_the_pipelines_tables_as_declared():
    """README's pipeline tables are the contract's rendering, so the docs cannot drift from config.pbtxt."""
    from kit.models import project_root

    assert contract.PIPELINE.markdown() in (project_root() / "README.md").read_text()
