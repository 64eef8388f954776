"""Unit tests of kit.openai.triton: Triton's error texts as HTTP statuses, the backend's logprobs as OpenAI's."""

from __future__ import annotations

import pytest

from kit.openai.triton import logprob_entries, status_for


@pytest.mark.parametrize("message, status", [
    ("max_tokens 5000 exceeds the model's context of 2048 tokens", 400),
    ("unknown sampling parameter 'foo'; supported: ...", 400),
    ("Request for unknown model: 'llama_bls_ensemble' is not found", 503),
    ("Stub process 'llama3-8b-instruct_0_0' is not healthy.", 503),
    ("failed to connect to all addresses", 503),
    ("pipeline failed: boom", 500),
    ("llama3-8b-instruct: generation failed: boom", 500),
])
def test_status_for_triton_messages(message, status):
    """Not-there models are 503, the models' own failures 500, anything else the request's fault: 400."""
    assert status_for(message) == status


def test_logprob_entries_from_nvidia_backend_json():
    """Per token: the sampled token (vLLM puts it first) with its logprob; the top-k by rank as top_logprobs."""
    decoded = [{"9": {"logprob": -2.5, "rank": 3, "decoded_token": "b"},
                "5": {"logprob": -0.1, "rank": 1, "decoded_token": "a"},
                "6": {"logprob": -0.9, "rank": 2, "decoded_token": "x"}},
               {"7": {"logprob": -0.5, "rank": 1, "decoded_token": "c"},
                "8": {"logprob": -1.5, "rank": 2, "decoded_token": "d"}}]
    entries = logprob_entries(decoded, top=2)
    assert [(e["token"], e["logprob"]) for e in entries] == [("b", -2.5), ("c", -0.5)]
    assert [t["token"] for t in entries[0]["top_logprobs"]] == ["a", "x"]
    assert [t["token"] for t in entries[1]["top_logprobs"]] == ["c", "d"]
    assert entries[0]["bytes"] == [98]
    assert logprob_entries(None) == [] and logprob_entries([]) == []
