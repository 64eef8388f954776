"""The ``n`` sequences of one request, merged into the outputs of one Triton response.

vLLM streams deltas (``RequestOutputKind.DELTA``): each ``RequestOutput`` holds only the
sequences that advanced, each with its ``index``. NVIDIA's contract is positional: every
response carries all ``n`` sequences, in order. :class:`Sequences` keeps what outlives one
response (each sequence's finish reason and cumulative log-probability, the prompt's token
count) and :meth:`Sequences.merge` folds the outputs pending for one response into arrays of
length ``n``: texts concatenated per sequence, token counts summed, logprobs concatenated, the
latest finish reason. Pure Python (duck-typed vLLM outputs), unit-tested with stand-ins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Merged:
    """One response's worth of the request's sequences; every list has ``n`` entries, in order."""

    texts: list[str]
    num_output_tokens: list[int]
    finish_reasons: list[str]
    cumulative_logprobs: list[float]
    logprobs: list[str]
    num_input_tokens: int
    finished: bool


def logprob_entries(positions) -> list[dict[str, dict]]:
    """vLLM's per-token logprobs (``{token id: Logprob}`` per position) as JSON-ready dicts.

    NVIDIA's shape: ``{"<token id>": {"logprob": float, "rank": int, "decoded_token": str}}``.
    """
    return [
        {str(token): {"logprob": float(lp.logprob), "rank": lp.rank, "decoded_token": lp.decoded_token}
         for token, lp in position.items()}
        for position in positions
    ]


class Sequences:
    """Per-request state across responses; ``logprobs`` says whether the request asked vLLM for them."""

    def __init__(self, n: int, *, logprobs: bool = False):
        self.n = n
        self.logprobs = logprobs
        self.finish_reasons = ["None"] * n  # NVIDIA sends str(None) until a sequence ends
        self.cumulative = [math.nan] * n  # vLLM reports none without logprobs
        self.num_input_tokens = 0

    def merge(self, outputs) -> Merged:
        """Fold ``outputs`` (vLLM ``RequestOutput`` deltas, oldest first) into one response's values."""
        texts = [""] * self.n
        tokens = [0] * self.n
        entries: list[list | None] = [[] if self.logprobs else None for _ in range(self.n)]
        finished = False
        for output in outputs:
            if output.prompt_token_ids is not None:
                self.num_input_tokens = len(output.prompt_token_ids)
            finished = finished or output.finished
            for seq in output.outputs:
                i = seq.index
                texts[i] += seq.text
                tokens[i] += len(seq.token_ids)
                if seq.logprobs is not None:
                    entries[i] = (entries[i] or []) + logprob_entries(seq.logprobs)
                if seq.finish_reason is not None:
                    self.finish_reasons[i] = str(seq.finish_reason)
                if seq.cumulative_logprob is not None:
                    self.cumulative[i] = float(seq.cumulative_logprob)
        return Merged(
            texts=texts,
            num_output_tokens=tokens,
            finish_reasons=list(self.finish_reasons),
            cumulative_logprobs=list(self.cumulative),
            logprobs=[json.dumps(e) for e in entries],
            num_input_tokens=self.num_input_tokens,
            finished=finished,
        )
