"""The guarded pipeline's logic, free of Triton: request checks and prompt formatting.

:mod:`kit.triton_models.pipeline` wires this into Triton (BLS calls, response
senders, metrics). Everything that decides *what* happens to a request lives
here so it can be unit-tested with a plain tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kit import sampling
from kit.exceptions import RequestError

DEFAULT_MAX_TOKENS = 256
MAX_PROMPT_CHARS = 1_000_000
# Tokens a tokenizer may add that are not in the text (BOS, EOS, a dummy-prefix piece...).
ADDED_TOKENS_BOUND = 8


@dataclass(frozen=True)
class PipelineRequest:
    """A validated pipeline request, ready for the guard and the LLM."""

    prompt: str
    stream: bool
    sampling: dict[str, Any]
    prompt_is_formatted: bool = False

    @property
    def max_tokens(self) -> int:
        return self.sampling["max_tokens"]


def check_request(
    prompt: str,
    *,
    stream: bool = False,
    max_tokens: int | None = None,
    sampling_json: bytes | str | None = None,
    prompt_is_formatted: bool = False,
    max_context: int | None = None,
) -> PipelineRequest:
    """Validate a request; raise :class:`RequestError` saying what to fix."""
    if not prompt or not prompt.strip():
        raise RequestError("text_input is empty; send the question or instruction as text")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"text_input is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if "\x00" in prompt:
        raise RequestError("text_input contains NUL characters; remove them")
    params = sampling.parse(sampling_json, max_context=max_context)
    if "n" in params and params["n"] != 1:
        raise RequestError("the pipeline returns one answer per request: drop 'n' from sampling_parameters")
    if max_tokens is not None:
        if max_tokens <= 0:
            raise RequestError(f"max_tokens must be ≥ 1, got {max_tokens}")
        if max_context is not None and max_tokens > max_context:
            raise RequestError(f"max_tokens {max_tokens} exceeds the model's context of {max_context} tokens")
        params["max_tokens"] = max_tokens  # the explicit input wins over the JSON's value
    params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    return PipelineRequest(prompt=prompt, stream=stream, sampling=params, prompt_is_formatted=prompt_is_formatted)


class PromptFormatter:
    """Applies the model's chat template and checks the prompt fits the context."""

    def __init__(self, tokenizer, max_context: int | None = None):
        self.tokenizer = tokenizer
        self.max_context = max_context or getattr(tokenizer, "model_max_length", None)
        if self.max_context and self.max_context > 10**7:  # transformers' "unknown" sentinel
            self.max_context = None
        bos = getattr(tokenizer, "bos_token", None)
        # The engine tokenizes the text again; if that adds BOS, drop the template's own.
        adds_bos = bool(bos) and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
        self._strip_bos = bos if adds_bos else None

    @classmethod
    def load(cls, name_or_path: str, max_context: int | None = None) -> "PromptFormatter":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name_or_path), max_context)

    def format(self, request: PipelineRequest) -> str:
        """The text sent to the LLM: the chat-formatted prompt, checked against the context."""
        text = request.prompt
        if not request.prompt_is_formatted:
            text = self.chat_text([{"role": "user", "content": request.prompt}])
        if self.max_context and not self._surely_fits(text, request.max_tokens):
            n_prompt = len(self.tokenizer(text).input_ids)
            if n_prompt >= self.max_context:
                raise RequestError(
                    f"the prompt is {n_prompt} tokens but the model's context is {self.max_context}; shorten it"
                )
            if n_prompt + request.max_tokens > self.max_context:
                raise RequestError(
                    f"prompt ({n_prompt} tokens) + max_tokens ({request.max_tokens}) exceeds the context of "
                    f"{self.max_context} tokens; ask for at most {self.max_context - n_prompt} tokens"
                )
        return text

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        """``messages`` (``role``/``content`` dicts, multi-turn) as the model's chat template writes them.

        Without a chat template the last message's content is returned as it is. The
        template's BOS is dropped when the engine's tokenizer adds its own.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            return messages[-1]["content"]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if self._strip_bos and text.startswith(self._strip_bos):
            text = text[len(self._strip_bos):]
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens the engine's tokenizer makes of ``text`` (special tokens it adds included)."""
        return len(self.tokenizer(text).input_ids)

    def _surely_fits(self, text: str, max_tokens: int) -> bool:
        """True when the prompt fits whatever it tokenizes to, so counting its tokens can be skipped.

        Byte-level BPE, SentencePiece with byte fallback and character tokenizers all emit at
        most one token per UTF-8 byte, plus the few they add. Counting costs about 0.1 ms a
        request, more than the rest of the pipeline's set-up; most prompts are far below the bound.
        """
        return len(text.encode("utf-8")) + ADDED_TOKENS_BOUND + max_tokens <= self.max_context


def llm_sampling_json(request: PipelineRequest) -> str:
    return json.dumps(request.sampling, sort_keys=True)
