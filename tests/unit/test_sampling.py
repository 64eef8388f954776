"""kit.sampling: validation of the sampling_parameters JSON."""

import json

import pytest

from kit import sampling
from kit.exceptions import RequestError


def test_valid_parameters_are_coerced_and_nulls_dropped():
    """Numbers sent as strings are coerced like NVIDIA's backend does; null values are dropped."""
    out = sampling.parse(json.dumps({"temperature": "0.5", "max_tokens": 8.0, "top_k": None, "ignore_eos": "true"}))
    assert out == {"temperature": 0.5, "max_tokens": 8, "ignore_eos": True}


def test_empty_input_means_no_parameters():
    """None, empty and whitespace-only strings mean the engine's defaults."""
    assert sampling.parse(None) == {} and sampling.parse("") == {} and sampling.parse(b"  ") == {}


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"temperature": NaN}', "not valid JSON"),
        ('{"temperature": Infinity}', "not valid JSON"),
        ('{"temperature": 1e999}', "finite"),
        ('{"max_tokens": 0}', "max_tokens"),
        ('{"max_tokens": -5}', "max_tokens"),
        ('{"max_tokens": 1.5}', "integer"),
        ('{"max_tokens": true}', "boolean"),
        ('{"top_p": 2}', "top_p"),
        ('{"stop": [1, 2]}', "stop"),
        ('{"logit_bias": {"x": 1}}', "logit_bias"),
        ('{"allowed_token_ids": []}', "allowed_token_ids"),
        ('{"_eos_token_id": 1}', "unknown sampling parameter"),
        ('{"structured_outputs": {}}', "exactly one"),
        ('{"structured_outputs": {"json": {}, "regex": "a"}}', "exactly one"),
        ('{"structured_outputs": {"jsn": {}}}', "unknown keys"),
        ('{"structured_outputs": "{oops"}', "not valid JSON"),
        ('{"structured_outputs": {"choice": []}}', "choice"),
        ('{"lora_name": ""}', "lora_name"),
        ('{"extra_args": ' + "[" * 40 + "]" * 40 + "}", "nested more than"),
        ('{"output_kind": 1}', "unknown sampling parameter"),
        ("[" * 100_000 + "]" * 100_000, "too deeply|limit"),
        (b"\xff\xfe", "UTF-8"),
        ("x" * (sampling.MAX_JSON_BYTES + 1), "limit"),
    ],
)
def test_invalid_parameters_raise_a_request_error_naming_the_problem(raw, message):
    """Every malformed or out-of-range value is refused with a message that says what to fix."""
    with pytest.raises(RequestError, match=message):
        sampling.parse(raw)


def test_max_tokens_beyond_the_context_is_refused():
    """max_tokens larger than the model's context is refused when the context is known."""
    with pytest.raises(RequestError, match="context of 100"):
        sampling.parse('{"max_tokens": 101}', max_context=100)
    assert sampling.parse('{"max_tokens": 100}', max_context=100)["max_tokens"] == 100


def test_logit_bias_keys_become_token_ids():
    """logit_bias keys arrive as JSON strings and become integer token ids."""
    assert sampling.parse('{"logit_bias": {"17": 50}}') == {"logit_bias": {17: 50.0}}


def test_every_client_field_of_vllm_is_accepted():
    """FIELDS plus the backend-set fields are exactly the installed vLLM's public SamplingParams fields."""
    vllm_sampling = pytest.importorskip("vllm.sampling_params")
    public = {f for f in vllm_sampling.SamplingParams.__struct_fields__ if not f.startswith("_")}
    assert set(sampling.FIELDS) | sampling.INTERNAL_FIELDS == public
    assert not set(sampling.FIELDS) & sampling.INTERNAL_FIELDS


def test_structured_outputs_arrive_as_an_object_or_as_its_json_text():
    """NVIDIA's clients send structured_outputs as JSON text; an object works too; both validate keys."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_text = sampling.parse(json.dumps({"structured_outputs": json.dumps({"json": schema})}))
    as_object = sampling.parse(json.dumps({"structured_outputs": {"json": schema, "disable_any_whitespace": "true"}}))
    assert as_text == {"structured_outputs": {"json": schema}}
    assert as_object == {"structured_outputs": {"json": schema, "disable_any_whitespace": True}}


def test_lora_name_and_new_vllm_fields_pass_through():
    """lora_name (NVIDIA's extra field) and fields like prompt_logprobs are accepted and coerced."""
    out = sampling.parse('{"lora_name": "doll", "prompt_logprobs": "2", "flat_logprobs": "false", "detokenize": 1}')
    assert out == {"lora_name": "doll", "prompt_logprobs": 2, "flat_logprobs": False, "detokenize": True}


def test_the_string_false_is_false():
    """A boolean sent as the string "false" is false (Python's bool("false") would be true)."""
    assert sampling.parse('{"ignore_eos": "false", "skip_special_tokens": "False"}') == {
        "ignore_eos": False, "skip_special_tokens": False,
    }


def test_check_validates_decoded_request_parameters():
    """Request parameters (already decoded by Triton) go through the same checks."""
    assert sampling.check({"temperature": "0", "max_tokens": 5}) == {"temperature": 0.0, "max_tokens": 5}
    with pytest.raises(RequestError, match="unknown sampling parameter"):
        sampling.check({"bogus": 1})
