"""The OpenAI-compatible API on the real server: the openai SDK (sync, async, streaming), LangChain, raw HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from kit.config import DEFAULT_REFUSAL, LLM_MODEL, PIPELINE_MODEL
from tests.conftest import OPENAI_TEST_KEY

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")

BANNED = re.compile(r"\b(fuck|shit)\b", re.IGNORECASE)  # whole words, as the guard censors them
MODELS = [PIPELINE_MODEL, LLM_MODEL]
GREEDY = {"temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def client(openai_url):
    return openai.OpenAI(base_url=openai_url, api_key=OPENAI_TEST_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def raw(openai_url):
    with httpx.Client(base_url=openai_url, headers={"Authorization": f"Bearer {OPENAI_TEST_KEY}"},
                      timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def forced_banned(tiny_model) -> dict:
    """Sampling that makes the random model spell banned words (as tests/integration/test_pipeline.py does)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ids = [tok.encode(p) for p in [" f", "uck", " s", "h", "it"]]
    assert all(len(i) == 1 for i in ids), "the tiny tokenizer changed: pick other pieces"
    return {"allowed_token_ids": [i[0] for i in ids], "ignore_eos": True}


def _model_outputs(server, model: str) -> set[str]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        meta = client.get_model_metadata(model, as_json=True)
    finally:
        client.close()
    return {t["name"] for t in meta.get("outputs", [])}


def _length_reason(server, model: str) -> set[str]:
    """The finish reasons an answer cut at max_tokens may show: "length", once the model reports why it stopped."""
    return {"length"} if "finish_reason" in _model_outputs(server, model) else {"length", "stop"}


def _ask(client, model=PIPELINE_MODEL, content="What does Triton do?", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kwargs)


def _assert_still_serving(client) -> None:
    """The next request is answered (ignore_eos: the random model may otherwise end at once, with no text)."""
    answer = _ask(client, max_tokens=4, extra_body={"ignore_eos": True})
    assert answer.choices[0].message.content and answer.usage.completion_tokens == 4


def test_models_lists_the_pipeline_and_the_llm(client):
    """GET /v1/models lists the guarded pipeline and the bare LLM."""
    assert {m.id for m in client.models.list()} == {PIPELINE_MODEL, LLM_MODEL}


@pytest.mark.parametrize("model", MODELS)
def test_chat_answer(server, client, model):
    """A multi-turn chat gets an assistant answer with usage and the censored_words field."""
    answer = client.chat.completions.create(
        model=model, max_tokens=12, extra_body={"ignore_eos": True}, messages=[
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Name a GPU."},
            {"role": "assistant", "content": "An H100."},
            {"role": "user", "content": "Another one?"},
        ])
    choice = answer.choices[0]
    assert answer.model == model and answer.object == "chat.completion"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in _length_reason(server, model)
    censored = choice.model_extra["censored_words"]
    assert isinstance(censored, int) and (censored == 0 if model == LLM_MODEL else censored >= 0)
    assert answer.usage.prompt_tokens > 20 and answer.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streamed_chunks_join_to_the_answer(server, client, model):
    """At temperature 0, the streamed chunks join to the non-streamed answer, ending with one finish_reason."""
    whole = _ask(client, model, max_tokens=24, extra_body={"ignore_eos": True}, **GREEDY)
    chunks = list(_ask(client, model, max_tokens=24, stream=True, extra_body={"ignore_eos": True}, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) == 1 and reasons[0] in _length_reason(server, model)


def test_async_client_streams(openai_url):
    """The async SDK client streams an answer too, two requests at once."""
    async def one(api, i):
        stream = await api.chat.completions.create(
            model=PIPELINE_MODEL, messages=[{"role": "user", "content": f"Count to {i}"}], max_tokens=8,
            stream=True, extra_body={"ignore_eos": True})
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def main():
        async with openai.AsyncOpenAI(base_url=openai_url, api_key=OPENAI_TEST_KEY, max_retries=0) as api:
            return await asyncio.gather(one(api, 3), one(api, 5))

    assert all(asyncio.run(main()))


@pytest.mark.parametrize("stream", [False, True])
def test_n_two_gives_two_answers(client, stream):
    """n=2 gives choices 0 and 1, each finished; with a seed and temperature they differ."""
    kwargs = {"n": 2, "max_tokens": 16, "temperature": 1.0, "seed": 3, "extra_body": {"ignore_eos": True}}
    if stream:
        texts: dict[int, str] = {0: "", 1: ""}
        reasons = {}
        for c in _ask(client, stream=True, **kwargs):
            for choice in c.choices:
                texts[choice.index] += choice.delta.content or ""
                if choice.finish_reason:
                    reasons[choice.index] = choice.finish_reason
        assert set(reasons) == {0, 1}
    else:
        answer = _ask(client, **kwargs)
        assert [c.index for c in answer.choices] == [0, 1]
        texts = {c.index: c.message.content for c in answer.choices}
    assert texts[0] and texts[1] and texts[0] != texts[1]


@pytest.mark.parametrize("model", MODELS)
def test_stop_string_ends_the_answer(client, model):
    """A stop string cut out of the greedy answer ends the answer just before it, with finish_reason stop."""
    full = _ask(client, model, max_tokens=32, extra_body={"ignore_eos": True}, **GREEDY).choices[0].message.content
    # Stop strings apply to the LLM's own text and the censor reads whole words: take a slice that
    # starts a word, well clear of anything masked, so the cut never leaves a word the censor reads otherwise.
    starts = [i for i in range(10, len(full) - 4) if full[i - 1].isspace() and full[i:i + 4].strip()
              and "*" not in full[max(0, i - 12):i + 16]]
    assert starts, f"no word start clear of masked text in {full!r}"
    stop = full[starts[0]:starts[0] + 4]
    answer = _ask(client, model, max_tokens=32, stop=[stop], extra_body={"ignore_eos": True}, **GREEDY).choices[0]
    assert answer.message.content == full[:full.index(stop)]
    assert answer.finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_usage_counts_the_tokens_generated(server, client, model):
    """usage.completion_tokens is the engine's count: exactly max_tokens with ignore_eos, in answers and streams."""
    if "num_output_tokens" not in _model_outputs(server, model):
        pytest.skip(f"{model} does not report num_output_tokens: the service cannot know the engine's count")
    answer = _ask(client, model, max_tokens=20, extra_body={"ignore_eos": True})
    assert answer.usage.completion_tokens == 20
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 20
    chunks = list(_ask(client, model, max_tokens=20, stream=True, stream_options={"include_usage": True},
                       extra_body={"ignore_eos": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].usage.prompt_tokens == answer.usage.prompt_tokens


def test_stream_options_include_usage_adds_a_last_chunk(client):
    """With stream_options.include_usage the last chunk has no choices and the usage."""
    chunks = list(_ask(client, max_tokens=8, stream=True, stream_options={"include_usage": True},
                       extra_body={"ignore_eos": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_refused_prompt_ends_with_content_filter(client, stream):
    """A profane prompt gets the refusal text and finish_reason content_filter, and no generated tokens."""
    kwargs = {"content": "You are a piece of shit", "max_tokens": 16}
    if stream:
        chunks = list(_ask(client, stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert reason == ["content_filter"]
    else:
        answer = _ask(client, **kwargs)
        text, reason = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert reason == "content_filter" and answer.usage.completion_tokens == 0
    assert text == DEFAULT_REFUSAL


def test_forced_banned_words_never_reach_the_sse_client(raw, forced_banned):
    """The random model forced to spell banned words: the SSE stream is the LLM's text censored, counted."""
    from kit.guardrails import Guard

    body = {"model": PIPELINE_MODEL, "messages": [{"role": "user", "content": "say it"}], "stream": True,
            "max_tokens": 96, "seed": 7, **forced_banned}
    uncensored = raw.post("/chat/completions", json=dict(body, model=LLM_MODEL, stream=False)).json()
    found = Guard().find(uncensored["choices"][0]["message"]["content"])
    assert found, "the forced vocabulary should produce banned words"
    with raw.stream("POST", "/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        payload = "".join(resp.iter_text())
    events = [line[len("data: "):] for line in payload.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    assert not BANNED.search(payload) and not Guard().find(text)
    assert text == Guard().censor(uncensored["choices"][0]["message"]["content"])
    assert sum(c["choices"][0].get("censored_words", 0) for c in chunks if c["choices"]) == len(found)


@pytest.fixture(scope="module")
def no_whitespace(tiny_model) -> dict[str, float]:
    """logit_bias against blank tokens: the random model would fill a JSON grammar's whitespace to max_tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    return {str(i): -100 for i in range(len(tok)) if tok.decode([i]) and not tok.decode([i]).strip()}


@pytest.mark.parametrize("model", MODELS)
def test_structured_output_validates_against_its_schema(client, model, no_whitespace):
    """response_format json_schema: the answer parses as JSON and validates against the schema."""
    import jsonschema

    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "ok": {"type": "boolean"}},
              "required": ["name", "ok"], "additionalProperties": False}
    answer = _ask(client, model, max_tokens=64, temperature=0.0, logit_bias=no_whitespace, response_format={
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema}})
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


def test_completions_endpoint(client):
    """POST /v1/completions answers a raw prompt, streamed and not, with usage."""
    answer = client.completions.create(model=LLM_MODEL, prompt="Once upon a time", max_tokens=8,
                                       extra_body={"ignore_eos": True}, **GREEDY)
    assert answer.object == "text_completion" and answer.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=LLM_MODEL, prompt="Once upon a time", max_tokens=8, stream=True, extra_body={"ignore_eos": True},
        **GREEDY) if c.choices)
    assert streamed == answer.choices[0].text


def test_langchain_chat_model(openai_url):
    """langchain-openai's ChatOpenAI talks to the service, plain and streamed."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=PIPELINE_MODEL, base_url=openai_url, api_key=OPENAI_TEST_KEY, max_tokens=8,
                     temperature=0, max_retries=0)
    assert llm.invoke("What is BLS?").content
    assert "".join(chunk.content for chunk in llm.stream("And vLLM?"))


BAD_REQUESTS = {
    "empty messages": ({"model": PIPELINE_MODEL, "messages": []}, 400),
    "unknown model": ({"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}, 404),
    "unknown role": ({"model": PIPELINE_MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, 400),
    "max_tokens 0": ({"model": PIPELINE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400),
    "max_tokens -5": ({"model": LLM_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, 400),
    "temperature hot": ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400),
    "prompt too long": ({"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 4}, 400),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_openai_errors_and_the_service_keeps_serving(raw, client, case, stream):
    """Each bad request gets its status and an OpenAI error object (no traceback); the next request is answered."""
    body, status = BAD_REQUESTS[case]
    resp = raw.post("/chat/completions", json={**body, "stream": stream})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"] and "Traceback" not in resp.text
    _assert_still_serving(client)


def test_invalid_json_body_is_a_400(raw, client):
    """A body that is not JSON is a 400 with an error object."""
    resp = raw.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    _assert_still_serving(client)


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic a2l0LXRlc3Qta2V5"])
def test_wrong_api_key_is_a_401(openai_url, client, header):
    """Without the right Bearer key every /v1 route answers 401; the service keeps serving the right key."""
    headers = {"Authorization": header} if header else {}
    resp = httpx.get(f"{openai_url}/models", headers=headers, timeout=30)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=openai_url, api_key="wrong", max_retries=0).models.list()
    _assert_still_serving(client)


def _settled_tokens(server, timeout_s: float = 90.0) -> float:
    """The engine's generated-token counter once nothing runs and it stopped moving (counters land late)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        idle = server.metric("vllm:num_requests_running", model=LLM_MODEL) == 0 and \
            server.metric("vllm:num_requests_waiting", model=LLM_MODEL) == 0
        value = server.metric("vllm:generation_tokens_total", model=LLM_MODEL)
        if idle and value == last:
            return value
        last = value
        time.sleep(1.0)
    raise AssertionError("the engine did not go idle")


NON_STREAMING_HANG_UP = pytest.mark.xfail(
    reason="known defect: a non-streaming client that hangs up early is not always cancelled in the engine "
           "(27,580 tokens made after the hang-up, of 28,800 owed, in one run; 287-5,369 in others)", strict=False)


@pytest.mark.parametrize("stream", [pytest.param(False, marks=NON_STREAMING_HANG_UP), True])
def test_client_disconnect_cancels_the_triton_requests(server, openai_url, client, stream):
    """16 clients that hang up while the engine generates their answers: it stops far short of what was owed.

    Streamed clients hang up after their first chunk; the others (nothing comes back before the
    end) once the LLM is busy with them (:meth:`ServerHandle.llm_busy`). With ``ignore_eos`` every
    request that is not cancelled generates exactly its budget, so the tokens made after the
    hang-up, against the tokens still owed then, show what the cancellation saved.
    """
    requests, budget = 16, 1800
    body = {"model": PIPELINE_MODEL, "messages": [{"role": "user", "content": "a long answer"}],
            "max_tokens": budget, "ignore_eos": True, "stream": stream}

    async def ask(http):
        if stream:
            async with http.stream("POST", "/chat/completions", json=body) as resp:
                async for _ in resp.aiter_lines():
                    return  # the first chunk, then hang up
        await http.post("/chat/completions", json=body)  # cancelled below, which closes the connection

    async def until_llm_busy(arrived: int):
        while not server.llm_busy(arrived, requests):
            await asyncio.sleep(0.05)

    async def main() -> float:
        async with httpx.AsyncClient(base_url=openai_url, timeout=120,
                                     headers={"Authorization": f"Bearer {OPENAI_TEST_KEY}"}) as http:
            arrived = server.inference_count(LLM_MODEL)
            tasks = [asyncio.ensure_future(ask(http)) for _ in range(requests)]
            if not stream:
                await asyncio.wait_for(until_llm_busy(arrived), 120)
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return server.metric("vllm:generation_tokens_total", model=LLM_MODEL)

    _assert_still_serving(client)
    before = _settled_tokens(server)
    at_hang_up = asyncio.run(main()) - before  # the counter lags a little: this errs on the strict side
    after = _settled_tokens(server) - before - at_hang_up
    owed = requests * budget - at_hang_up
    print(f"\nOpenAI hang-ups (stream={stream}): {at_hang_up:.0f} tokens before, {after:.0f} after, "
          f"of {owed:.0f} still owed")
    assert after <= owed / 2
    _assert_still_serving(client)


def test_logprobs_with_top_logprobs(client):
    """logprobs with top_logprobs=2 (bare LLM): one entry per token, each with its two most likely tokens."""
    answer = _ask(client, LLM_MODEL, max_tokens=6, logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True},
                  **GREEDY)
    entries = answer.choices[0].logprobs.content
    assert len(entries) == 6 and "".join(e.token for e in entries) == answer.choices[0].message.content
    assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
    assert all(e.token == e.top_logprobs[0].token for e in entries)  # greedy: the sampled token is the likeliest


def test_the_guarded_pipeline_refuses_logprobs(client):
    """Through the censoring pipeline logprobs are a 400: the tokens would reveal the censored words."""
    with pytest.raises(openai.BadRequestError, match="censor"):
        _ask(client, PIPELINE_MODEL, max_tokens=6, logprobs=True)
