"""kit.pipeline: request checks and prompt formatting, with the tiny model's real tokenizer."""

from __future__ import annotations

import json

import pytest

from kit.exceptions import RequestError
from kit.pipeline import DEFAULT_MAX_TOKENS, PipelineRequest, PromptFormatter, check_request, llm_sampling_json


@pytest.mark.parametrize("prompt,fix", [
    ("", "empty"), ("   \n", "empty"), ("a\x00b", "NUL"), ("x" * 1_000_001, "limit"),
])
def test_check_request_refuses_bad_prompts(prompt, fix):
    with pytest.raises(RequestError, match=fix):
        check_request(prompt)


@pytest.mark.parametrize("kwargs,fix", [
    ({"max_tokens": 0}, "≥ 1"),
    ({"max_tokens": 5000, "max_context": 4096}, "exceeds the model's context"),
    ({"sampling_json": '{"n": 2}'}, "drop 'n'"),
    ({"sampling_json": "not json"}, "JSON"),
])
def test_check_request_refuses_bad_settings(kwargs, fix):
    with pytest.raises(RequestError, match=fix):
        check_request("hello", **kwargs)


def test_check_request_max_tokens_input_wins_and_defaults():
    req = check_request("hi", max_tokens=7, sampling_json='{"max_tokens": 99, "temperature": 0}', stream=True)
    assert req.max_tokens == 7 and req.sampling["temperature"] == 0 and req.stream
    assert check_request("hi").max_tokens == DEFAULT_MAX_TOKENS
    assert json.loads(llm_sampling_json(req)) == {"max_tokens": 7, "temperature": 0}


@pytest.fixture(scope="module")
def formatter(tiny_model):
    return PromptFormatter.load(str(tiny_model), max_context=256)


def _req(prompt, max_tokens=8, formatted=False):
    return PipelineRequest(prompt=prompt, stream=False, sampling={"max_tokens": max_tokens},
                           prompt_is_formatted=formatted)


def test_format_applies_the_chat_template_once(formatter):
    text = formatter.format(_req("What is 2+2?"))
    assert "What is 2+2?" in text and text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = formatter.tokenizer(text).input_ids  # what the engine sees: one BOS, from the template or the tokenizer
    assert ids.count(formatter.tokenizer.bos_token_id) == 1 and ids[0] == formatter.tokenizer.bos_token_id
    assert formatter.format(_req("already formatted", formatted=True)) == "already formatted"


def test_format_counts_tokens_only_near_the_context(formatter, monkeypatch):
    """Short prompts skip tokenization (a byte bound proves they fit); long ones are counted."""
    calls = []
    tokenizer = formatter.tokenizer
    monkeypatch.setattr(formatter, "tokenizer", _Counting(tokenizer, calls))
    formatter.format(_req("short question"))
    assert calls == []
    with pytest.raises(RequestError, match="shorten it"):
        formatter.format(_req("word " * 400))
    assert len(calls) == 1
    n_prompt = len(tokenizer(formatter.format(_req("tell me more " * 10, max_tokens=1))).input_ids)
    with pytest.raises(RequestError, match=f"ask for at most {256 - n_prompt} tokens"):
        formatter.format(_req("tell me more " * 10, max_tokens=256 - n_prompt + 1))


def test_byte_bound_holds_for_multibyte_text(formatter):
    """The skip is safe: no text tokenizes to more tokens than its UTF-8 bytes plus the added ones."""
    for text in ("héllo wörld", "日本語のテキスト", "emoji 🙂🙃🤖 mix", "\u200b" * 20, "a" * 300):
        n_tokens = len(formatter.tokenizer(text).input_ids)
        assert n_tokens <= len(text.encode("utf-8")) + 8


class _Counting:
    """The tokenizer, counting calls that tokenize (the template is applied by the real one)."""

    def __init__(self, inner, calls):
        self._inner, self._calls = inner, calls

    def __call__(self, text):
        self._calls.append(text)
        return self._inner(text)

    def __getattr__(self, name):
        return getattr(self._inner, name)
