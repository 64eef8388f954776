"""The kit's vLLM backend on the real server with the real (CPU) vLLM engine."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import InferenceError

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "max_tokens": 24, "ignore_eos": True}


def test_non_streaming_generate_returns_text(server):
    """A plain request is answered with generated text and the requested number of tokens."""
    result = server.client(LLM_MODEL).generate("Hello there", sampling=GREEDY)
    assert result.text
    assert result.chunks == 1


def test_streaming_deltas_add_up_to_the_non_streaming_text(server):
    """At temperature 0 the streamed deltas concatenate to exactly the non-streaming answer."""
    client = server.client(LLM_MODEL)
    whole = client.generate("Tell me about Triton", sampling=GREEDY)
    deltas = [d.text for d in client.stream("Tell me about Triton", sampling=GREEDY)]
    assert len([d for d in deltas if d]) > 1
    assert "".join(deltas) == whole.text


def test_http_generate_prepends_the_prompt_unless_excluded(server):
    """Over HTTP `generate`, NVIDIA's contract: the prompt is prepended when not excluded."""
    import urllib.request

    body = {"text_input": "Prefix check", "sampling_parameters": json.dumps(GREEDY)}
    req = urllib.request.Request(f"{server.http_url}/v2/models/{LLM_MODEL}/generate", data=json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    assert answer["text_output"].startswith("Prefix check")


def test_finish_reason_and_token_count_when_asked(server):
    """return_finish_reason / return_num_output_tokens add those outputs."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    from kit.client import grpc_inputs

    client = grpcclient.InferenceServerClient(server.grpc_address)
    answers = []
    client.start_stream(callback=lambda result, error: answers.append((result, error)))
    inputs = grpc_inputs({
        "text_input": "count", "sampling_parameters": json.dumps(GREEDY),
        "return_finish_reason": True, "return_num_output_tokens": True,
    }, LLM_MODEL)
    client.async_stream_infer(LLM_MODEL, inputs)
    client.stop_stream()  # waits for the outstanding request
    client.close()
    result, error = answers[-1]
    assert error is None
    assert result.as_numpy("finish_reason")[0] == b"length"
    assert result.as_numpy("num_output_tokens").astype(np.int64).sum() == GREEDY["max_tokens"]


def test_32_concurrent_requests_are_all_answered(server):
    """Thirty-two requests in flight at once all complete (the engine batches them)."""
    def one(i: int):
        return server.client(LLM_MODEL).generate(f"request {i}", sampling={**GREEDY, "max_tokens": 16})

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    assert len(results) == 32 and all(r.text for r in results)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"text_input": "hi", "sampling_parameters": "{not json"}, "not valid JSON"),
        ({"text_input": "hi", "sampling_parameters": json.dumps({"max_tokens": -1})}, "max_tokens"),
        ({"text_input": "hi", "sampling_parameters": json.dumps({"temperature": "hot"})}, "temperature"),
        ({"text_input": "hi", "sampling_parameters": json.dumps({"bogus": 1})}, "unknown sampling parameter"),
        ({"text_input": b"\xff\xfe bad bytes"}, "UTF-8"),
        ({"text_input": "hi", "sampling_parameters": json.dumps({"max_tokens": 10**6})}, "context"),
        ({"text_input": "hi", "stream": True, "exclude_input_in_output": False}, "exclude_input_in_output"),
    ],
)
def test_bad_requests_get_an_error_and_the_server_keeps_serving(server, inputs, message):
    """Each malformed request is answered with an INVALID_ARG error naming the problem."""
    client = Client(server.grpc_address, model=LLM_MODEL)
    with pytest.raises(InferenceError, match=message):
        list(client._grpc_stream(LLM_MODEL, inputs))
    assert server.client(LLM_MODEL).generate("still alive?", sampling=GREEDY).text


def test_missing_text_input_is_rejected_by_the_server(server):
    """A request without text_input gets the server's own error, and serving continues."""
    client = Client(server.grpc_address, model=LLM_MODEL)
    with pytest.raises(InferenceError, match="text_input"):
        list(client._grpc_stream(LLM_MODEL, {"stream": True}))
    assert server.ready()


def test_engine_metrics_are_exported_as_nvidia_names_them(server):
    """REPORT_CUSTOM_METRICS exports NVIDIA's counters and bucketed histograms, plus the kit's gauges."""
    import time

    before = server.metric("vllm:e2e_request_latency_seconds_count", model=LLM_MODEL)
    server.client(LLM_MODEL).generate("metrics", sampling={**GREEDY, "n": 2, "temperature": 1.0, "seed": 1})
    deadline = time.monotonic() + 10
    while server.metric("vllm:e2e_request_latency_seconds_count", model=LLM_MODEL) <= before:
        assert time.monotonic() < deadline, "engine metrics were not flushed within 10 s"
        time.sleep(0.2)
    metrics = server.metrics()
    assert server.metric("vllm:generation_tokens_total", model=LLM_MODEL) >= 2 * GREEDY["max_tokens"]
    for histogram in ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
                      "request_prompt_tokens", "request_generation_tokens", "request_params_n",
                      "request_params_max_tokens"):
        buckets = [k for k in metrics if k.startswith(f"vllm:{histogram}_bucket{{") and f'model="{LLM_MODEL}"' in k]
        assert any('le="+Inf"' in k for k in buckets) and len(buckets) > 2, histogram
        assert server.metric(f"vllm:{histogram}_count", model=LLM_MODEL) >= 1, histogram
    assert server.metric("vllm:request_params_n_sum", model=LLM_MODEL) >= 2
    assert any(k.startswith("vllm:num_requests_running") for k in metrics)


# ---------------------------------------------------------------- sampling parameters
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 6}, "ok": {"type": "boolean"}},
    "required": ["name", "ok"],
    "additionalProperties": False,
}


def no_whitespace_bias(model_dir) -> dict[str, float]:
    """logit_bias that keeps the random tiny model from filling a JSON grammar's whitespace forever.

    vLLM 0.32 ignores the per-request ``disable_any_whitespace`` (an engine setting there), and at
    temperature 0 the random weights happen to prefer whitespace, which JSON allows between tokens.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    blank = [i for i in range(len(tokenizer)) if tokenizer.decode([i]) and not tokenizer.decode([i]).strip()]
    return {str(i): -100 for i in blank}


@pytest.mark.parametrize("model", [LLM_MODEL, PIPELINE_MODEL])
def test_json_schema_structured_output_parses_and_validates(server, tiny_model, model):
    """A JSON-schema request returns a document that parses and validates, also through the pipeline."""
    import jsonschema

    params = {"temperature": 0, "max_tokens": 64, "logit_bias": no_whitespace_bias(tiny_model),
              "structured_outputs": {"json": PERSON}}
    text = server.client(model).generate("Describe a person as JSON", sampling=params).text
    jsonschema.validate(json.loads(text), PERSON)


def test_structured_outputs_sent_as_json_text_work_like_nvidias_clients_send_them(server):
    """structured_outputs may arrive as JSON text (NVIDIA's accuracy test sends {"choice": [...]} so)."""
    params = {"temperature": 0, "structured_outputs": json.dumps({"choice": ["Positive", "Negative"]})}
    assert server.client(LLM_MODEL).generate("Sentiment?", sampling=params).text in ("Positive", "Negative")


def test_request_parameters_are_the_sampling_parameters_when_the_tensor_is_absent(server):
    """Without a sampling_parameters tensor, the request's parameters are used (max_tokens is honoured)."""
    import tritonclient.grpc as grpcclient

    from kit.client import grpc_inputs

    client = grpcclient.InferenceServerClient(server.grpc_address)
    answers = []
    client.start_stream(callback=lambda result, error: answers.append((result, error)))
    inputs = grpc_inputs({"text_input": "params", "exclude_input_in_output": True, "return_num_output_tokens": True},
                         LLM_MODEL)
    client.async_stream_infer(LLM_MODEL, inputs, parameters={"max_tokens": 7, "ignore_eos": "true", "temperature": "0"})
    client.stop_stream()
    client.close()
    result, error = answers[-1]
    assert error is None
    assert int(result.as_numpy("num_output_tokens")[0]) == 7


def test_vllm_validation_errors_are_invalid_arg_with_vllms_message(server):
    """min_tokens > max_tokens is refused by vLLM itself; the client gets INVALID_ARG with its text."""
    client = Client(server.grpc_address, server.http_url, model=LLM_MODEL, protocol="http")
    with pytest.raises(InferenceError, match="min_tokens must be less than or equal to max_tokens") as info:
        client.generate("x", sampling={"min_tokens": 9, "max_tokens": 3})
    assert info.value.status == "400"  # INVALID_ARG; INTERNAL would be 500


# ---------------------------------------------------------------- NVIDIA's sample layout, LoRA, health check
def test_a_config_without_tensors_loads_through_auto_complete(server, sample_model):
    """NVIDIA's two-line config.pbtxt loads: the backend fills in the tensors, decoupled policy and batching."""
    import urllib.request

    from kit import contract

    with urllib.request.urlopen(f"{server.http_url}/v2/models/{sample_model}/config", timeout=10) as resp:
        config = json.loads(resp.read())
    assert config["model_transaction_policy"]["decoupled"] is True
    assert config["max_batch_size"] == 0
    assert [t["name"] for t in config["input"]] == [t.name for t in contract.LLM.inputs]
    assert {t["name"]: t["data_type"] for t in config["output"]} == {
        t.name: t.config_type for t in contract.LLM.outputs
    }


def test_lora_name_picks_the_adapter(server, sample_model):
    """Each adapter of multi_lora.json changes the tiny model's greedy output; no adapter is the base model."""
    client = server.client(sample_model)
    answers = {name: client.generate("Hello there", sampling={**GREEDY, "lora_name": name}).text
               for name in ("doll", "sheep")}
    base = client.generate("Hello there", sampling=GREEDY).text
    assert len({base, *answers.values()}) == 3
    assert client.generate("Hello there", sampling={**GREEDY, "lora_name": "doll"}).text == answers["doll"]


@pytest.mark.parametrize("model, lora, message", [
    ("sample", "unavailable", r"LoRA unavailable is not supported, we currently support \['doll', 'sheep'\]"),
    (LLM_MODEL, "doll", "LoRA feature is not enabled."),
])
def test_unknown_adapter_or_lora_off_is_a_clear_invalid_arg(server, sample_model, model, lora, message):
    """An adapter that is not listed, or any adapter while LoRA is off, gets NVIDIA's error text as a 400."""
    model = sample_model if model == "sample" else model
    client = Client(server.grpc_address, server.http_url, model=model, protocol="http")
    with pytest.raises(InferenceError, match=message) as info:
        client.generate("x", sampling={"lora_name": lora})
    assert info.value.status == "400"


def test_disable_log_stats_turns_engine_metrics_off(server, sample_model):
    """REPORT_CUSTOM_METRICS with disable_log_stats: true in model.json exports no vllm: metric (NVIDIA's rule)."""
    server.client(sample_model).generate("quiet", sampling=GREEDY)
    assert not [k for k in server.metrics() if k.startswith("vllm:") and f'model="{sample_model}"' in k]


def test_health_checked_model_serves_while_the_engine_is_healthy(server, sample_model):
    """With ENABLE_VLLM_HEALTH_CHECK the engine is asked before each batch; a healthy one serves on."""
    for _ in range(2):
        assert server.client(sample_model).generate("healthy?", sampling=GREEDY).text
    assert server.ready()


# ---------------------------------------------------------------- NVIDIA's additional outputs, n > 1, vLLM's errors
def stream_results(server, model, values, parameters=None):
    """Every (result, error) of one gRPC stream request, in order."""
    import tritonclient.grpc as grpcclient

    from kit.client import grpc_inputs

    client = grpcclient.InferenceServerClient(server.grpc_address)
    answers = []
    client.start_stream(callback=lambda result, error: answers.append((result, error)))
    client.async_stream_infer(model, grpc_inputs(values, model), parameters=parameters)
    client.stop_stream()
    client.close()
    return answers


ALL_EXTRAS = {f"return_{name}": True for name in
              ("finish_reason", "cumulative_logprob", "logprobs", "num_input_tokens", "num_output_tokens")}


@pytest.mark.parametrize("stream", [False, True])
def test_additional_outputs_have_nvidias_types_and_add_up(server, stream):
    """cumulative_logprob FP32, logprobs JSON, num_input_tokens UINT32: one entry per token, rank-1 tokens = text."""
    params = {**GREEDY, "max_tokens": 8, "logprobs": 2}
    answers = stream_results(server, LLM_MODEL, {"text_input": "Count tokens", "stream": stream,
                                                 "exclude_input_in_output": True,
                                                 "sampling_parameters": json.dumps(params), **ALL_EXTRAS})
    assert all(error is None for _, error in answers)
    results = [r for r, _ in answers if r.as_numpy("text_output") is not None]
    assert len(results) > 1 if stream else len(results) == 1
    tokens = entries = 0
    for result in results:
        assert result.as_numpy("cumulative_logprob").dtype.name == "float32"
        assert result.as_numpy("num_input_tokens").dtype.name == "uint32"
        count = int(result.as_numpy("num_output_tokens")[0])
        logprobs = json.loads(result.as_numpy("logprobs")[0])
        assert len(logprobs) == count and all(1 <= len(d) <= 3 for d in logprobs)
        tokens, entries = tokens + count, entries + len(logprobs)
    assert tokens == entries == params["max_tokens"]
    assert int(results[-1].as_numpy("num_input_tokens")[0]) > 0
    assert results[-1].as_numpy("finish_reason")[0] == b"length"
    assert float(results[-1].as_numpy("cumulative_logprob")[0]) < 0


def test_streaming_n_sequences_arrive_positionally(server):
    """With n = 3 every streamed response carries 3 sequences in order; each adds up to its own answer."""
    params = {"temperature": 1.0, "seed": 7, "max_tokens": 12, "ignore_eos": True, "n": 3}
    answers = stream_results(server, LLM_MODEL, {"text_input": "Three ways", "stream": True,
                                                 "exclude_input_in_output": True, "return_num_output_tokens": True,
                                                 "sampling_parameters": json.dumps(params)})
    results = [r for r, e in answers if e is None and r.as_numpy("text_output") is not None]
    assert results and all(r.as_numpy("text_output").shape == (3,) for r in results)
    totals = [sum(int(r.as_numpy("num_output_tokens")[i]) for r in results) for i in range(3)]
    assert totals == [12, 12, 12]
    texts = ["".join(r.as_numpy("text_output")[i].decode("utf-8", "replace") for r in results) for i in range(3)]
    assert len(set(texts)) > 1  # three samples, not one sequence repeated


def test_pipeline_forwards_token_counts_and_finish_reason(server):
    """llama_bls_ensemble's optional outputs: num_input_tokens, num_output_tokens adding up, finish_reason last."""
    flags = {"return_finish_reason": True, "return_num_input_tokens": True, "return_num_output_tokens": True}
    answers = stream_results(server, PIPELINE_MODEL, {"text_input": "Tell me a story", "stream": True,
                                                      "max_tokens": 10, "sampling_parameters": json.dumps(GREEDY),
                                                      **flags})
    results = [r for r, e in answers if e is None and r.as_numpy("text_output") is not None]
    assert sum(int(r.as_numpy("num_output_tokens")[0]) for r in results) == 10
    assert int(results[-1].as_numpy("num_input_tokens")[0]) > 0
    assert results[-1].as_numpy("finish_reason")[0] == b"length"
    assert all(r.as_numpy("finish_reason")[0] == b"None" for r in results[:-1])


def test_pipeline_refuses_logprobs_while_its_censor_is_on(server):
    """Logprobs would reveal censored words, so the guarded pipeline refuses them with a clear error."""
    answers = stream_results(server, PIPELINE_MODEL, {"text_input": "hi", "return_logprobs": True,
                                                      "sampling_parameters": json.dumps({"logprobs": 1})})
    assert "censor" in answers[-1][1].message()


@pytest.mark.parametrize("values, message", [
    ({"text_input": "word " * 3000}, "vLLM rejected the request"),
    ({"text_input": "hi", "sampling_parameters": json.dumps({"allowed_token_ids": [10**6]})}, "allowed_token_ids"),
])
def test_requests_vllm_rejects_are_invalid_arg_with_its_message(server, values, message):
    """A prompt over the context or out-of-vocabulary token ids: vLLM's message as a 400, not a 500."""
    client = Client(server.grpc_address, server.http_url, model=LLM_MODEL, protocol="http")
    with pytest.raises(InferenceError, match=message) as info:
        client.generate(values["text_input"], sampling=json.loads(values.get("sampling_parameters", "{}")))
    assert info.value.status == "400"
    assert server.client(LLM_MODEL).generate("still serving", sampling=GREEDY).text
