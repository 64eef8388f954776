"""kit.triton_models.sequences: vLLM's per-sequence deltas merged into positional responses."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from kit.triton_models.sequences import Sequences


def seq(index, text, tokens, finish=None, cumulative=None, logprobs=None):
    return SimpleNamespace(index=index, text=text, token_ids=tokens, finish_reason=finish,
                           cumulative_logprob=cumulative, logprobs=logprobs)


def out(*seqs, finished=False, prompt=(1, 2, 3)):
    return SimpleNamespace(outputs=list(seqs), finished=finished, prompt_token_ids=list(prompt))


def lp(logprob, rank, token):
    return SimpleNamespace(logprob=logprob, rank=rank, decoded_token=token)


def test_every_response_carries_all_sequences_in_order():
    """A delta that advanced only sequence 1 still yields n entries, sequence 0 empty."""
    merged = Sequences(2).merge([out(seq(1, "b", [7]))])
    assert merged.texts == ["", "b"] and merged.num_output_tokens == [0, 1]
    assert merged.finish_reasons == ["None", "None"] and merged.num_input_tokens == 3


def test_pending_outputs_merge_texts_counts_and_the_last_finish_reason():
    """Several pending deltas: texts concatenated per index, counts summed, last finish reason kept."""
    seqs = Sequences(2)
    merged = seqs.merge([
        out(seq(0, "He", [1]), seq(1, "Hi", [2])),
        out(seq(0, "llo", [3, 4], finish="length"), seq(1, "!", [5]), finished=False),
    ])
    assert merged.texts == ["Hello", "Hi!"] and merged.num_output_tokens == [3, 2]
    assert merged.finish_reasons == ["length", "None"] and not merged.finished
    later = seqs.merge([out(seq(1, "", [], finish="stop"), finished=True)])
    assert later.finish_reasons == ["length", "stop"] and later.finished  # sequence 0 stays finished


def test_logprobs_are_concatenated_as_nvidias_json():
    """Logprobs of the pending deltas join into one JSON list of {token id: {logprob, rank, decoded_token}}."""
    seqs = Sequences(1, logprobs=True)
    merged = seqs.merge([
        out(seq(0, "a", [5], cumulative=-0.5, logprobs=[{5: lp(-0.5, 1, "a")}])),
        out(seq(0, "b", [6], cumulative=-1.25, logprobs=[{6: lp(-0.75, 1, "b"), 9: lp(-2.0, 2, "z")}])),
    ])
    entries = json.loads(merged.logprobs[0])
    assert entries == [{"5": {"logprob": -0.5, "rank": 1, "decoded_token": "a"}},
                       {"6": {"logprob": -0.75, "rank": 1, "decoded_token": "b"},
                        "9": {"logprob": -2.0, "rank": 2, "decoded_token": "z"}}]
    assert merged.cumulative_logprobs == [-1.25]
    assert json.loads(seqs.merge([out(seq(0, "", []))]).logprobs[0]) == []  # asked for, none new


def test_without_logprobs_the_json_is_null_and_cumulative_is_nan():
    """When the request did not ask vLLM for logprobs, logprobs is null and cumulative_logprob NaN."""
    merged = Sequences(1).merge([out(seq(0, "a", [5]))])
    assert merged.logprobs == ["null"] and math.isnan(merged.cumulative_logprobs[0])
