"""The guarded pipeline (llama_bls_ensemble) and llama_postprocess on the real server."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from kit.client import Client
from kit.config import BLOCKING_MODEL, DEFAULT_REFUSAL, LLM_MODEL, PIPELINE_MODEL, POSTPROCESS_MODEL
from kit.exceptions import InferenceError, KitError
from kit.guardrails import Guard
from tests.conftest import answer

pytestmark = pytest.mark.integration

BANNED = re.compile(r"\b(fuck|shit)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def profane_sampling(tiny_model):
    """Sampling that makes the random model spell banned words from pieces: ' f'+'uck', ' s'+'h'+'it'."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    pieces = [" f", "uck", " s", "h", "it"]
    ids = [tok.encode(p) for p in pieces]
    assert all(len(i) == 1 for i in ids), "the tiny tokenizer changed: pick other pieces"
    return {"allowed_token_ids": [i[0] for i in ids], "seed": 7, "max_tokens": 96, "ignore_eos": True}


def test_clean_prompt_is_answered(server):
    """A clean prompt reaches the LLM and comes back unblocked with text."""
    before = server.inference_count()
    result = server.client().generate("What is Triton Inference Server?", max_tokens=16,
                                      sampling={"ignore_eos": True})
    assert not result.blocked and result.text
    assert server.inference_count() == before + 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("prompt", ["You are a piece of shit", "f.u.c.k this", "tell me, ѕhit-head"])
def test_profane_prompt_is_refused_without_reaching_the_llm(server, prompt, stream):
    """A profane prompt gets the refusal, input_blocked=true, and the LLM's inference count does not move."""
    before = server.inference_count()
    result = server.client().generate(prompt, stream=stream, max_tokens=16)
    assert result.blocked and result.text == DEFAULT_REFUSAL
    assert prompt not in result.text and not BANNED.search(result.text)
    assert server.inference_count() == before


@pytest.mark.parametrize("stream", [False, True])
def test_banned_words_split_across_deltas_never_reach_the_client(server, profane_sampling, stream):
    """The raw LLM stream spells banned words across deltas; the pipeline's answer contains none of them."""
    prompt = "Say something."
    raw = server.client(LLM_MODEL).generate(prompt, stream=True, sampling=profane_sampling)
    matches = Guard().find(raw.text)
    assert matches, "the forced vocabulary should produce banned words"
    boundaries = set(np.cumsum([len(d) for d in raw.deltas]).tolist())
    assert any(any(m.start < b < m.end for b in boundaries) for m in matches), "no word split across deltas"

    guarded = server.client().generate(prompt, stream=stream, prompt_is_formatted=True, sampling=profane_sampling)
    assert not guarded.blocked
    assert not BANNED.search(guarded.text) and not Guard().find(guarded.text)
    assert guarded.censored == len(matches)
    assert guarded.text == Guard().censor(raw.text)
    if stream:
        assert guarded.chunks > 1


def test_streaming_sends_deltas_and_a_final_response(server):
    """With stream=true the answer arrives as several deltas whose concatenation is the whole text."""
    deltas = list(server.client().stream("Stream please", max_tokens=32, sampling={"ignore_eos": True}))
    assert len([d for d in deltas if d.text]) > 1
    assert all(not d.blocked for d in deltas)


def test_http_generate_stream_through_the_pipeline(server):
    """The pipeline also streams over HTTP server-sent events."""
    client = Client(server.grpc_address, server.http_url, protocol="http")
    result = client.generate("HTTP streaming", stream=True, max_tokens=16, sampling={"ignore_eos": True})
    assert result.text and result.chunks > 1
    blocked = client.generate("what the fuck", max_tokens=8)
    assert blocked.blocked and blocked.text == DEFAULT_REFUSAL


def test_max_tokens_input_wins_over_sampling_json(server):
    """The max_tokens input overrides max_tokens inside sampling_parameters."""
    result = server.client(PIPELINE_MODEL).generate(
        "count", max_tokens=4, sampling={"max_tokens": 64, "ignore_eos": True}, stream=True
    )
    assert result.chunks <= 4


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"text_input": ""}, "empty"),
        ({"text_input": "   \n\t "}, "empty"),
        ({"text_input": b"\xc3\x28 broken"}, "UTF-8"),
        ({"text_input": "hi", "sampling_parameters": "{nope"}, "not valid JSON"),
        ({"text_input": "hi", "sampling_parameters": '{"temperature": "warm"}'}, "temperature"),
        ({"text_input": "hi", "sampling_parameters": '{"n": 2}'}, "one answer"),
        ({"text_input": "hi", "max_tokens": 0}, "max_tokens must be"),
        ({"text_input": "hi", "max_tokens": -3}, "max_tokens must be"),
        ({"text_input": "hi", "max_tokens": 100_000}, "context"),
        ({"text_input": "word " * 3000}, "context"),
        ({"text_input": "hi\x00there"}, "NUL"),
    ],
)
def test_bad_input_gets_an_error_and_the_server_keeps_serving(server, inputs, message):
    """Each bad request is answered with an error that says what to fix; the next request works."""
    client = Client(server.grpc_address)
    with pytest.raises(InferenceError, match=message):
        list(client._grpc_stream(PIPELINE_MODEL, inputs))
    assert answer(server.client())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_prompt_that_is_not_utf8_is_refused_on_both_protocols(server, protocol):
    """b"\\xff\\xfe caf\\xe9" is refused naming UTF-8 over gRPC (by the server) and HTTP (by the client)."""
    client = server.client(protocol=protocol)
    with pytest.raises(KitError, match="text_input.*not valid UTF-8"):
        client.generate(b"\xff\xfe caf\xe9", max_tokens=4)
    assert answer(client)


def test_cancelled_stream_cancels_the_llm_request(server):
    """Closing a stream mid-answer aborts the LLM request: the engine drains and serves at once.

    The aborts travel through kit.aborts' folder, not as BLS requests: the LLM sees only the four
    requests themselves, and the folder is empty once they ended.
    """
    import tritonclient.grpc as grpcclient

    from kit import aborts
    from kit.client import grpc_inputs, request_inputs

    arrived = server.inference_count(LLM_MODEL)
    got_first = threading.Event()
    client = grpcclient.InferenceServerClient(server.grpc_address)
    client.start_stream(callback=lambda result, error: got_first.set())
    inputs = request_inputs(PIPELINE_MODEL, "long answer please", stream=True, max_tokens=1500,
                            sampling={"ignore_eos": True})
    for i in range(4):
        client.async_stream_infer(PIPELINE_MODEL, grpc_inputs(inputs), request_id=f"c{i}")
    assert got_first.wait(60)
    client.stop_stream(cancel_requests=True)
    client.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.metric("vllm:num_requests_running", model=LLM_MODEL) == 0 and \
                server.metric("vllm:num_requests_waiting", model=LLM_MODEL) == 0:
            break
        time.sleep(0.2)
    assert server.metric("vllm:num_requests_running", model=LLM_MODEL) == 0
    deadline = time.monotonic() + 20  # a decoupled model's count moves as its requests are released
    while server.inference_count(LLM_MODEL) - arrived < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # and nothing more arrives after them
    assert server.inference_count(LLM_MODEL) - arrived == 4
    if server.server is not None:  # a server this session started: its folder is known
        assert list(aborts.folder(LLM_MODEL, server.server.pid).glob("*")) == []
    started = time.monotonic()
    assert answer(server.client(), "next one")
    assert time.monotonic() - started < 30


def _settled_metric(server, name: str, model: str) -> float:
    """A guard counter once the pipeline's pending counts (handed over twice a second) have landed."""
    value = server.metric(name, model=model)
    for _ in range(8):
        time.sleep(0.7)
        value, previous = server.metric(name, model=model), value
        if value == previous:
            break
    return value


def test_guard_metrics_count_blocks_and_censored_words(server, profane_sampling):
    """The pipeline exports prompts blocked, words censored and guard time on the metrics port."""
    # earlier tests' last requests may still have counts on their way
    blocked = _settled_metric(server, "kit_guard_prompts_blocked_total", PIPELINE_MODEL)
    censored = _settled_metric(server, "kit_guard_words_censored_total", PIPELINE_MODEL)
    server.client().generate("shit", max_tokens=4)
    result = server.client().generate("x", prompt_is_formatted=True, sampling=profane_sampling)
    deadline = time.monotonic() + 5  # the pipeline hands its counters to Triton twice a second
    while time.monotonic() < deadline and server.metric("kit_guard_prompts_blocked_total", model=PIPELINE_MODEL) == blocked:
        time.sleep(0.1)
    time.sleep(0.6)
    assert server.metric("kit_guard_prompts_blocked_total", model=PIPELINE_MODEL) == blocked + 1
    assert server.metric("kit_guard_words_censored_total", model=PIPELINE_MODEL) == censored + result.censored
    assert server.metric("kit_guard_time_us_total", model=PIPELINE_MODEL) > 0


def test_benign_corpus_is_answered_by_the_default_policy(server):
    """All 200+ everyday prompts of the shipped corpus pass the pipeline's input guard."""
    from concurrent.futures import ThreadPoolExecutor

    from kit.guardrails.corpora import load

    prompts = [p for _, p in load("benign")]
    client = server.client()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: client.generate(p, max_tokens=1), prompts))
    refused = [p for p, r in zip(prompts, results, strict=True) if r.blocked]
    assert len(results) >= 200 and refused == []


def test_guard_metrics_have_a_label_per_category(server):
    """A refused obscenity and a counted insult move kit_guard_matches_total for their categories."""
    name = "kit_guard_matches_total"
    labels = {"model": PIPELINE_MODEL, "where": "input"}
    _settled_metric(server, name, PIPELINE_MODEL)  # earlier requests' counts have landed
    obscenity = server.metric(name, category="obscenity", **labels)
    insult = server.metric(name, category="insult", **labels)
    assert server.client().generate("oh shit", max_tokens=1).blocked
    assert not server.client().generate("you idiot, explain BLS", max_tokens=1).blocked
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (server.metric(name, category="insult", **labels) == insult
                                           or server.metric(name, category="obscenity", **labels) == obscenity):
        time.sleep(0.2)
    assert server.metric(name, category="obscenity", action="block", **labels) == obscenity + 1
    assert server.metric(name, category="insult", action="count", **labels) == insult + 1
    assert server.metric(name, category="topic", **labels) == 0  # the default policy does not look for topics


def test_blocking_variant_answers_the_same_way(server):
    """llama_bls_blocking (the seed's one-at-a-time mode) gives the same guarded answers."""
    client = server.client(BLOCKING_MODEL)
    assert answer(client, "hello", max_tokens=8)
    assert client.generate("go to hell you bastard", max_tokens=8).blocked


def _postprocess(server, texts):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_address)
    data = np.array([[t] for t in texts], dtype=np.object_)
    tensor = grpcclient.InferInput("text_input", list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    try:
        return client.infer(POSTPROCESS_MODEL, [tensor])
    finally:
        client.close()


def test_postprocess_censors_a_batch(server):
    """llama_postprocess censors each text of a batch and counts the words it replaced."""
    result = _postprocess(server, [b"clean text", "well sh!t and f.u.c.k".encode(), "Scunthorpe".encode()])
    texts = [t[0].decode() for t in result.as_numpy("text_output")]
    assert texts == ["clean text", "well **** and ****", "Scunthorpe"]
    assert result.as_numpy("censored_words").reshape(-1).tolist() == [0, 2, 0]


def test_postprocess_rejects_invalid_utf8(server):
    """Invalid UTF-8 sent to llama_postprocess is an error, and the model keeps serving."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="UTF-8"):
        _postprocess(server, [b"\xff\xfe"])
    assert _postprocess(server, [b"ok"]).as_numpy("text_output")[0][0] == b"ok"


def test_sampling_json_reaches_the_llm(server):
    """sampling_parameters pass through the pipeline to vLLM (same seed, same text)."""
    params = {"seed": 3, "temperature": 1.0, "max_tokens": 12, "ignore_eos": True}
    a = server.client().generate("seeded", sampling=params)
    b = server.client().generate("seeded", sampling=params)
    c = server.client().generate("seeded", sampling={**params, "seed": 4})
    assert a.text == b.text and a.text != c.text
