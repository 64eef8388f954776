"""Reliability on the real server: load, cancellation, disconnects, hostile input, guard integrity.

The soak runs 200 requests here; ``KIT_SOAK=1`` runs the full 1,000. Figures
(RSS, drain times, fuzz cases) are printed for the record (``pytest -s``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.client import grpc_inputs, request_inputs
from kit.config import DEFAULT_REFUSAL, LLM_MODEL, PIPELINE_MODEL, POSTPROCESS_MODEL
from kit.contract import ABORT_PARAMETER, CANCELLED_MESSAGE, ID_PARAMETER
from kit.exceptions import InferenceError
from kit.guardrails import Guard
from tests.conftest import answer

pytestmark = pytest.mark.integration

SOAK_REQUESTS = 1000 if os.environ.get("KIT_SOAK") == "1" else 200
ANSWER_BOUND_S = 120


def _session_rss_mb(server) -> float:
    import psutil

    from kit.processes import session_processes

    total = 0
    for pid in session_processes(server.server.pid):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _drained(server, timeout: float = 20.0) -> float:
    """Seconds until the engine has no running or waiting request (fails the test after ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        running = server.metric("vllm:num_requests_running", model=LLM_MODEL)
        waiting = server.metric("vllm:num_requests_waiting", model=LLM_MODEL)
        if running == 0 and waiting == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"the engine still had requests {timeout}s after the clients went away")


def _one_mixed_request(server, i: int):
    rng = random.Random(i)
    client = server.client()
    max_tokens = rng.randint(4, 48)
    stream = rng.random() < 0.5
    result = client.generate(f"soak request {i}", stream=stream, max_tokens=max_tokens, sampling={"ignore_eos": True})
    return result, stream, max_tokens


@pytest.mark.soak
def test_soak_every_request_completes_and_memory_stays_flat(server):
    """Mixed streaming/non-streaming pipeline requests at concurrency 32: no failure, RSS within 15%."""
    if server.server is None:
        pytest.skip("needs a server started by the tests (RSS is read from its processes)")
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: _one_mixed_request(server, i), range(64)))  # warm-up
    before = _session_rss_mb(server)
    failures = []
    started = time.monotonic()

    def run(i):
        try:
            result, stream, _ = _one_mixed_request(server, 10_000 + i)
            if result.blocked or not result.text:
                failures.append((i, "incomplete"))
        except InferenceError as exc:
            failures.append((i, str(exc)))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(run, range(SOAK_REQUESTS)))
    elapsed = time.monotonic() - started
    after = _session_rss_mb(server)
    print(f"\nsoak: {SOAK_REQUESTS} requests at concurrency 32 in {elapsed:.1f}s, failures {len(failures)}, "
          f"RSS after warm-up {before:.0f} MiB, after soak {after:.0f} MiB ({after / before - 1:+.1%})")
    assert not failures
    assert after <= before * 1.15


def test_16_cancelled_streams_leave_the_engine_idle(server):
    """Sixteen long streams cancelled after their first tokens: the engine drains and serves at once."""
    import tritonclient.grpc as grpcclient

    firsts = threading.Semaphore(0)
    client = grpcclient.InferenceServerClient(server.grpc_address)
    seen = set()

    def on_response(result, error):
        if result is not None and result.get_response().id not in seen:
            seen.add(result.get_response().id)
            firsts.release()

    client.start_stream(callback=on_response)
    inputs = request_inputs(PIPELINE_MODEL, "a very long answer", stream=True, max_tokens=1800,
                            sampling={"ignore_eos": True})
    try:
        for i in range(16):
            client.async_stream_infer(PIPELINE_MODEL, grpc_inputs(inputs), request_id=f"cancel-{i}")
        for _ in range(16):
            assert firsts.acquire(timeout=120), f"{len(seen)} of 16 streams answered within 120 s"
    finally:  # also after a failure: no stream left running into the next test
        client.stop_stream(cancel_requests=True)
        client.close()
    drain = _drained(server)
    print(f"\n16 cancelled streams drained in {drain:.2f}s")
    assert answer(server.client())


NON_STREAMING_CANCEL = pytest.mark.xfail(
    reason="known defect, not yet understood: in about 1 run of 5 of the whole suite on a loaded 2-core machine the "
           "cancellation of non-streaming requests never reaches the engine (no 'Cancelling' line; 28,800 of 28,800 "
           "tokens direct, 27,174 through the pipeline); 107 attempts of this test alone never failed. One cause, an "
           "abort that overtakes its request, is fixed (test_an_abort_that_overtakes_its_request_cancels_it)",
    strict=False)


@pytest.mark.parametrize("model", [pytest.param(LLM_MODEL, marks=NON_STREAMING_CANCEL),
                                   pytest.param(PIPELINE_MODEL, marks=NON_STREAMING_CANCEL)])
def test_cancelled_non_streaming_requests_stop_generating(server, model):
    """Non-streaming requests yield nothing until the end, yet a cancellation stops most of what they still owed.

    With ``ignore_eos`` every request that is not cancelled generates exactly its budget, so the
    tokens made after the cancellation, against those still owed then, show what it saved.
    """
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_address)
    client.start_stream(callback=lambda result, error: None)
    requests, max_tokens = 16, 1800  # ~29k tokens: far more than the engine makes before a cancellation lands
    inputs = request_inputs(model, "a very long answer", stream=False, max_tokens=max_tokens,
                            sampling={"ignore_eos": True})
    _drained(server, timeout=60)  # nothing left running by an earlier test
    generated = server.metric("vllm:generation_tokens_total", model=LLM_MODEL)
    arrived = server.inference_count(LLM_MODEL)
    for i in range(requests):
        client.async_stream_infer(model, grpc_inputs(inputs), request_id=f"nostream-{i}")
    deadline = time.monotonic() + 120
    while not server.llm_busy(arrived, requests):
        assert time.monotonic() < deadline, "the requests never reached the LLM"
        time.sleep(0.05)
    before = server.metric("vllm:generation_tokens_total", model=LLM_MODEL) - generated  # lags: errs strict
    client.stop_stream(cancel_requests=True)
    client.close()
    _drained(server)
    time.sleep(1.0)  # the engine's counters reach Triton's metrics within a flush period
    after = server.metric("vllm:generation_tokens_total", model=LLM_MODEL) - generated - before
    owed = requests * max_tokens - before
    print(f"\n{model}: {before:.0f} tokens before the cancellation, {after:.0f} after, of {owed:.0f} still owed")
    assert after <= owed / 2
    assert answer(server.client())


def test_an_abort_that_overtakes_its_request_cancels_it(server):
    """The pipeline's abort and its LLM request travel on threads of their own: an abort that reaches
    the vLLM backend first is kept, and the request it names is cancelled on arrival instead of
    generating its whole budget (1,800 tokens here, minutes on this CPU)."""
    import queue
    import uuid

    import tritonclient.grpc as grpcclient

    request_id = uuid.uuid4().hex
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_address)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(LLM_MODEL, grpc_inputs({"text_input": ""}, LLM_MODEL),
                                  parameters={ABORT_PARAMETER: request_id}, enable_empty_final_response=True)
        aborted, error = answers.get(timeout=60)  # the abort is answered before its request is sent
        assert error is None and aborted.get_response().parameters["triton_final_response"].bool_param
        inputs = request_inputs(LLM_MODEL, "a very long answer", stream=False, max_tokens=1800,
                                sampling={"ignore_eos": True})
        client.async_stream_infer(LLM_MODEL, grpc_inputs(inputs, LLM_MODEL), parameters={ID_PARAMETER: request_id})
        result, error = answers.get(timeout=60)
    finally:
        client.stop_stream()
        client.close()
    assert result is None and error is not None
    assert CANCELLED_MESSAGE in str(error)
    assert answer(server.client(LLM_MODEL), "right after")


def test_http_client_disconnect_mid_stream_aborts_generation(server):
    """A client that drops its HTTP connection mid-stream leaves no generation behind."""
    url = urllib.parse.urlparse(server.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = json.dumps({"text_input": "long", "max_tokens": 1800, "stream": True,
                       "sampling_parameters": json.dumps({"ignore_eos": True})})
    conn.request("POST", f"/v2/models/{PIPELINE_MODEL}/generate_stream", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data:")
    conn.sock.close()  # the client goes away without a word
    conn.close()
    drain = _drained(server, timeout=30)
    print(f"\nHTTP disconnect drained in {drain:.2f}s")
    assert answer(server.client())


def test_grpc_client_disconnect_mid_stream_aborts_generation(server):
    """A gRPC client that closes its channel mid-stream leaves no generation behind."""
    import tritonclient.grpc as grpcclient

    got = threading.Event()
    client = grpcclient.InferenceServerClient(server.grpc_address)
    client.start_stream(callback=lambda result, error: got.set())
    inputs = request_inputs(PIPELINE_MODEL, "long", stream=True, max_tokens=1800, sampling={"ignore_eos": True})
    client.async_stream_infer(PIPELINE_MODEL, grpc_inputs(inputs))
    assert got.wait(60)
    client._channel.close()  # drop the connection, no cancel message
    drain = _drained(server, timeout=30)
    print(f"\ngRPC disconnect drained in {drain:.2f}s")
    assert answer(server.client())


# ---------------------------------------------------------------------------------------------- fuzzing

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_sampling = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    st.dictionaries(st.sampled_from(["temperature", "top_p", "max_tokens", "stop", "seed", "logit_bias",
                                     "allowed_token_ids", "n", "bogus", "_eos_token_id"]),
                    _json_values, max_size=4).map(lambda d: json.dumps(d, allow_nan=True)[:4000]),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
)
_prompt = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "So"]), max_size=100),
    st.integers(10_000, 300_000).map(lambda n: "x " * n),
)


def _send_raw(server, model: str, values: dict) -> str:
    """Send one request with arbitrary tensors; return 'ok' or the error text (never hang)."""
    import tritonclient.grpc as grpcclient

    answers = []
    done = threading.Event()
    client = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        client.start_stream(callback=lambda result, error: (answers.append(error), done.set()))
        inputs = []
        for name, (array, dtype) in values.items():
            tensor = grpcclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        client.async_stream_infer(model, inputs)
        assert done.wait(ANSWER_BOUND_S), f"no answer within {ANSWER_BOUND_S}s"
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
    return "ok" if answers[0] is None else answers[0].message()


_FUZZ_COUNT = {"cases": 0}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    model=st.sampled_from([PIPELINE_MODEL, LLM_MODEL]),
    prompt=_prompt,
    sampling=st.none() | _sampling,
    max_tokens=st.none() | st.integers(-2**31, 2**31 - 1),
    wrong=st.sampled_from(["none", "int_prompt", "shape", "float_stream"]),
)
def test_hostile_input_always_gets_an_answer(server, model, prompt, sampling, max_tokens, wrong):
    """Random bytes, huge strings, odd JSON, wrong types and shapes: an answer every time, the server stays ready."""
    _FUZZ_COUNT["cases"] += 1
    raw = prompt if isinstance(prompt, bytes) else prompt.encode("utf-8", errors="surrogatepass")
    values = {"text_input": (np.array([raw], dtype=np.object_), "BYTES")}
    if wrong == "int_prompt":
        values["text_input"] = (np.array([7], dtype=np.int32), "INT32")
    elif wrong == "shape":
        values["text_input"] = (np.array([[raw, raw]], dtype=np.object_), "BYTES")
    if sampling is not None:
        raw_sampling = sampling if isinstance(sampling, bytes) else sampling.encode("utf-8", errors="surrogatepass")
        values["sampling_parameters"] = (np.array([raw_sampling], dtype=np.object_), "BYTES")
    if model == PIPELINE_MODEL:
        if max_tokens is not None:
            values["max_tokens"] = (np.array([max_tokens % 64 if max_tokens > 0 else max_tokens], dtype=np.int32),
                                    "INT32")
        else:
            values["max_tokens"] = (np.array([8], dtype=np.int32), "INT32")
    if wrong == "float_stream":
        values["stream"] = (np.array([1.5], dtype=np.float32), "FP32")
    answer = _send_raw(server, model, values)
    assert answer == "ok" or len(answer) > 5
    assert server.ready()


def test_fuzzing_left_every_model_serving(server):
    """After the fuzzing above, every endpoint still answers normally."""
    print(f"\nfuzz cases tried: {_FUZZ_COUNT['cases']}")
    assert server.client(LLM_MODEL).generate("alive?", sampling={"max_tokens": 4}).text
    assert answer(server.client())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=300)), min_size=1, max_size=8))
def test_postprocess_survives_hostile_batches(server, texts):
    """llama_postprocess answers any batch of byte strings with text or a clear UTF-8 error."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    raw = [t if isinstance(t, bytes) else t.encode("utf-8", errors="surrogatepass") for t in texts]
    client = grpcclient.InferenceServerClient(server.grpc_address)
    data = np.array([[r] for r in raw], dtype=np.object_)
    tensor = grpcclient.InferInput("text_input", list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    try:
        result = client.infer(POSTPROCESS_MODEL, [tensor], client_timeout=ANSWER_BOUND_S)
        out = [t[0].decode() for t in result.as_numpy("text_output")]
        assert all(not Guard().find(t) for t in out)
    except InferenceServerException as exc:
        assert "UTF-8" in exc.message()
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- guard integrity


@pytest.fixture(scope="module")
def forced_vocabulary(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    return [tok.encode(p)[0] for p in (" f", "uck", " s", "h", "it", " the", "!")]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1), stream=st.booleans())
def test_no_banned_word_reaches_a_pipeline_client(server, forced_vocabulary, seed, stream):
    """Whatever the LLM emits (forced into banned words, any seed), the client never receives one."""
    params = {"allowed_token_ids": forced_vocabulary, "seed": seed, "max_tokens": 64, "ignore_eos": True}
    result = server.client().generate("go", stream=stream, prompt_is_formatted=True, sampling=params)
    assert not Guard().find(result.text)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(word=st.sampled_from(["shit", "fuck", "asshole", "kill yourself", "f.u.c.k", "sh!t"]),
       before=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40),
       after=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40))
def test_refusal_never_echoes_the_prompt(server, word, before, after):
    """A blocked prompt is answered with the fixed refusal, never with any part of the prompt."""
    prompt = f"{before} {word} {after}"
    result = server.client().generate(prompt, max_tokens=4)
    assert result.blocked and result.text == DEFAULT_REFUSAL
