"""kit.client: request inputs, the optional outputs of answers and the HTTP path's checks (no server)."""

from __future__ import annotations

import pytest

from kit import client
from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import RequestError


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


INVALID_UTF8 = b"\xff\xfe caf\xe9"


@pytest.mark.parametrize("call", ["generate", "stream", "generate-streamed"])
def test_http_refuses_bytes_that_are_not_utf8(call):
    """Over HTTP, a prompt that is not UTF-8 is refused before anything is sent (the gRPC path's server refuses it)."""
    # nothing listens on port 1: a request that reached the network would fail with another error
    client = Client("grpc://127.0.0.1:1", "http://127.0.0.1:1", protocol="http")
    with pytest.raises(RequestError, match="text_input.*not valid UTF-8"):
        if call == "generate":
            client.generate(INVALID_UTF8)
        elif call == "stream":
            list(client.stream(INVALID_UTF8))
        else:
            client.generate(INVALID_UTF8, stream=True)
