"""kit.client: request inputs and the optional outputs of answers (no server)."""

from __future__ import annotations

import pytest

from kit import client
from kit.config import LLM_MODEL, PIPELINE_MODEL


def test_outputs_ask_for_optional_outputs_by_their_return_flags():
    """outputs=[...] adds one return_<name> flag per optional output, for the LLM and the pipeline alike."""
    for model in (LLM_MODEL, PIPELINE_MODEL):
        inputs = client.request_inputs(model, "hi", stream=True, outputs=["logprobs", "num_output_tokens"])
        assert inputs["return_logprobs"] is True and inputs["return_num_output_tokens"] is True
    with pytest.raises(ValueError, match="unknown optional output 'tokens'"):
        client.request_inputs(LLM_MODEL, "hi", stream=False, outputs=["tokens"])


def test_http_events_carry_the_optional_outputs():
    """A generate event's optional outputs become Delta fields; "None" as finish reason means not finished."""
    delta = client._delta_from_json({"text_output": "a", "finish_reason": "None", "num_output_tokens": 2,
                                     "num_input_tokens": 5, "logprobs": '[{"7": {"logprob": -1.0}}]'})
    assert (delta.finish_reason, delta.num_output_tokens, delta.num_input_tokens) == (None, 2, 5)
    assert delta.logprobs == [{"7": {"logprob": -1.0}}]
    assert client._delta_from_json({"text_output": "a"}).num_output_tokens is None


def test_a_whole_answer_sums_tokens_and_joins_logprobs():
    """Result values: tokens summed, logprobs joined, the last finish reason and prompt count."""
    deltas = [client.Delta("a", num_output_tokens=2, logprobs=[{}, {}], num_input_tokens=4),
              client.Delta("b", num_output_tokens=1, logprobs=[{}], finish_reason="length", num_input_tokens=4)]
    assert client._combine(deltas) == {"num_output_tokens": 3, "logprobs": [{}, {}, {}], "finish_reason": "length",
                                       "num_input_tokens": 4}
    assert client._combine([client.Delta("a")]) == {}
