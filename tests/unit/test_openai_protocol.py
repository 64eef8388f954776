"""Unit tests of kit.openai.protocol: OpenAI request bodies → jobs, answers → OpenAI objects, errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.openai import protocol
from kit.openai.protocol import APIError, ChatRequest, Choice, CompletionRequest


def _template(messages):
    return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"


def _chat(**body):
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return protocol.chat_job(ChatRequest.model_validate(body), _template, max_context=2048)


def test_chat_defaults_to_the_guarded_pipeline_with_256_tokens():
    """Without model or max_tokens a chat goes to the pipeline with the pipeline's default budget."""
    job = _chat()
    assert job.model == PIPELINE_MODEL and job.max_tokens == 256 and job.n == 1 and not job.stream


def test_multi_turn_messages_go_through_the_chat_template_in_order():
    """System, user and assistant turns reach the template in order; developer counts as system; parts are joined."""
    job = _chat(messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "a"},
                          {"role": "assistant", "content": "b"},
                          {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}])
    assert job.prompts == ("system:be brief|user:a|assistant:b|user:cd|assistant:",)


def test_sampling_fields_map_onto_vllm_names():
    """OpenAI's fields and vLLM's extensions become SamplingParams fields; max_completion_tokens wins."""
    job = _chat(temperature=0.5, top_p=0.9, max_tokens=10, max_completion_tokens=20, stop="END", seed=3,
                presence_penalty=0.1, frequency_penalty=0.2, ignore_eos=True, allowed_token_ids=[1, 2])
    assert job.sampling == {"temperature": 0.5, "top_p": 0.9, "max_tokens": 20, "stop": ["END"], "seed": 3,
                            "presence_penalty": 0.1, "frequency_penalty": 0.2, "ignore_eos": True,
                            "allowed_token_ids": [1, 2]}


def test_n_choices_get_distinct_seeds():
    """With n > 1 and a seed, choice k samples with seed + k (n pipeline requests must not repeat each other)."""
    job = _chat(n=3, seed=10)
    assert [job.choice_sampling(k)["seed"] for k in range(3)] == [10, 11, 12]
    assert job.choices == 3 and job.prompt_of(2) == job.prompts[0]


def test_response_format_becomes_structured_outputs():
    """json_object and json_schema map onto vLLM's structured_outputs field; text adds nothing."""
    schema = {"type": "object"}
    assert _chat(response_format={"type": "json_object"}).sampling["structured_outputs"] == {"json_object": True}
    job = _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert job.sampling["structured_outputs"] == {"json": schema}
    assert "structured_outputs" not in _chat(response_format={"type": "text"}).sampling


@pytest.mark.parametrize("body, status, param", [
    ({"model": "gpt-4o"}, 404, "model"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_completion_tokens": -1}, 400, "max_tokens"),
    ({"max_tokens": 5000}, 400, None),
    ({"n": 0}, 400, "n"),
    ({"n": 17}, 400, "n"),
    ({"temperature": -1}, 400, None),
    ({"top_logprobs": 3}, 400, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
    ({"stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"messages": [{"role": "user", "content": "  "}]}, 400, "messages"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "response_format"),
])
def test_bad_chat_requests_are_refused_with_their_status(body, status, param):
    """Each bad request is an APIError with OpenAI's status and the offending parameter."""
    with pytest.raises(APIError) as caught:
        _chat(**body)
    assert caught.value.status == status and caught.value.param == param
    error = caught.value.body()["error"]
    assert error["message"] and error["type"] == APIError.TYPES[status]


@pytest.mark.parametrize("body", [{"messages": []}, {"messages": [{"role": "wizard", "content": "x"}]},
                                  {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}])
def test_malformed_bodies_are_400s_naming_the_field(body):
    """Empty messages, an unknown role or a non-text part fail validation; the error names the field."""
    with pytest.raises(ValidationError) as caught:
        ChatRequest.model_validate(body)
    error = protocol.validation_error(caught.value)
    assert error.status == 400 and error.param.startswith("messages")


def test_a_template_that_refuses_the_messages_is_a_400():
    """A chat template's own error (e.g. roles that must alternate) is the client's 400, not a crash."""
    def strict(messages):
        raise ValueError("Conversation roles must alternate user/assistant")

    with pytest.raises(APIError, match="must alternate") as caught:
        protocol.chat_job(ChatRequest.model_validate({"messages": [{"role": "user", "content": "x"}]}), strict)
    assert caught.value.status == 400


def test_completion_prompts_times_n_make_the_choices():
    """Two prompts with n=2 make four choices, prompt-major; echo is refused."""
    job = protocol.completion_job(CompletionRequest.model_validate({"prompt": ["a", "b"], "n": 2, "model": LLM_MODEL}))
    assert job.choices == 4 and [job.prompt_of(k) for k in range(4)] == ["a", "a", "b", "b"]
    with pytest.raises(APIError, match="echo"):
        protocol.completion_job(CompletionRequest.model_validate({"prompt": "a", "echo": True}))


def test_response_carries_usage_finish_reason_and_censored_words():
    """The whole answer: one usage for the prompt counted once, censored_words per choice."""
    job = _chat(n=2)
    choices = [Choice(index=0, text=["a", "b"], censored=1, finish_reason="stop", prompt_tokens=5, completion_tokens=2),
               Choice(index=1, text=["c"], finish_reason="length", prompt_tokens=5, completion_tokens=3)]
    answer = protocol.response(job, choices)
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert [c["message"]["content"] for c in answer["choices"]] == ["ab", "c"]
    assert [c[protocol.CENSORED_FIELD] for c in answer["choices"]] == [1, 0]
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_chunks_carry_the_role_first_and_the_finish_last():
    """A stream's first chunk of a choice names the assistant role; its last has finish_reason and censored_words."""
    job = _chat(stream=True, stream_options={"include_usage": True})
    first = protocol.chunk(job, 0, text="Hel", first=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    last = protocol.chunk(job, 0, finish_reason="content_filter", censored=0)
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "content_filter"
    assert protocol.usage_chunk(job, [])["choices"] == [] and job.include_usage


def test_models_list_names_both_models():
    """GET /v1/models lists the pipeline and the LLM."""
    assert [m["id"] for m in protocol.models_list(0)["data"]] == [PIPELINE_MODEL, LLM_MODEL]
