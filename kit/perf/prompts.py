"""Prompts for load tests: deterministic, varied questions of realistic length, chat-formatted.

The same text goes to the bare LLM and through the pipeline (``prompt_is_formatted``), so
both endpoints get the same requests: :func:`default_prompts` applies the served model's
chat template the way the pipeline would, or writes out Llama-3's published format.
"""

from __future__ import annotations

import warnings
from pathlib import Path

_QUESTIONS = (
    "Explain how a hash map handles collisions, and when you would choose open addressing instead of chaining.",
    "Summarise the main causes of the French Revolution for a student preparing for an exam.",
    "Write a short, friendly email asking a colleague to review a pull request before Friday.",
    "What are the trade-offs between batch size and latency when serving a language model on a GPU?",
    "Describe the water cycle in simple terms, as if talking to a ten-year-old.",
    "Give three practical tips for writing clear documentation for a command-line tool.",
    "Compare TCP and UDP, and name one application that suits each of them.",
    "Plan a three-day walking trip in the Lake District with a budget and a packing list.",
    "How does compound interest work? Show a worked example over five years.",
    "Suggest a weekly training plan for someone preparing for their first 10 km run.",
    "What is the difference between a process and a thread in an operating system?",
    "Write a haiku about autumn rain and then explain the imagery you chose.",
    "List the steps to bake a simple loaf of bread, with timings for each step.",
    "Why do transformers use positional encodings, and what alternatives exist?",
    "Draft a polite reply declining a meeting invitation because of a schedule conflict.",
    "Explain the idea behind continuous batching in an inference server.",
)
_FRAMES = (
    "{q}",
    "I am new to this topic. {q} Please keep the answer focused and well structured.",
    "Context: I am writing internal notes for my team and want them accurate. {q}",
    "{q} Finish with a one-sentence summary I could paste into a chat message.",
)

LLAMA3_USER_TEMPLATE = (
    "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def raw_prompts(n: int) -> list[str]:
    """``n`` deterministic, varied user questions of realistic length (not chat-formatted)."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    combos = [frame.format(q=q) for frame in _FRAMES for q in _QUESTIONS]
    return [combos[i % len(combos)] for i in range(n)]


def default_prompts(n: int, tokenizer_path: str | Path | None = None) -> list[str]:
    """``n`` chat-formatted prompts, ready to send with ``prompt_is_formatted=True``.

    With ``tokenizer_path`` (the served model's folder) the model's own chat template is
    applied exactly as the pipeline would apply it; otherwise Llama-3's published format is
    written out (without ``<|begin_of_text|>``, which the engine's tokenizer adds). The same
    text then goes to the direct LLM and through the pipeline: the same requests for both.
    """
    questions = raw_prompts(n)
    if tokenizer_path is not None:
        try:
            from kit.pipeline import PipelineRequest, PromptFormatter

            formatter = PromptFormatter.load(str(tokenizer_path))
            return [
                formatter.format(PipelineRequest(prompt=q, stream=True, sampling={"max_tokens": 1}))
                for q in questions
            ]
        except Exception as exc:  # noqa: BLE001 - a missing tokenizer only changes the template source
            warnings.warn(f"could not apply the chat template of {tokenizer_path} ({exc}); "
                          "using Llama-3's published format", stacklevel=2)
    return [LLAMA3_USER_TEMPLATE.format(content=q) for q in questions]
