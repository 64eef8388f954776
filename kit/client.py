"""A small client for people and notebooks: ``generate`` and ``stream`` through any endpoint.

Decoupled (streaming) models only answer over gRPC streams or HTTP's
``generate`` extension, so gRPC is the default transport; ``protocol="http"``
uses ``/generate`` and ``/generate_stream``. Errors the server sends back
surface as :class:`~kit.exceptions.InferenceError` carrying its message.

>>> client = Client.from_state()                      # doctest: +SKIP
>>> client.generate("Say hello", max_tokens=32).text  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from kit import contract
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.endpoints import to_grpc_address
from kit.exceptions import InferenceError, RequestError, ServerError

DEFAULT_TIMEOUT_S = 300.0
# What a client sees of a server that stopped or restarted mid-request (a supervised server
# restarts itself after losing a stub: the requests in flight then lose their connection).
CONNECTION_LOST = ("the connection to the server was lost mid-request ({detail}): the server stopped or "
                   "restarted (a supervised server restarts itself after a stub died); retry once it is healthy")


# Optional outputs a client may ask for with ``outputs=``; both the LLM and the pipeline have them.
OPTIONAL_OUTPUTS = ("finish_reason", "num_input_tokens", "num_output_tokens", "logprobs")


@dataclass(frozen=True)
class Delta:
    """One streamed piece of an answer, with the optional outputs the request asked for (else None)."""

    text: str
    blocked: bool = False
    censored: int = 0
    finish_reason: str | None = None
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    logprobs: list | None = None  # per token: {token id: {"logprob", "rank", "decoded_token"}}


@dataclass(frozen=True)
class Result:
    """A whole answer with its timings (seconds)."""

    text: str
    blocked: bool
    censored: int
    ttft_s: float
    latency_s: float
    chunks: int
    model: str
    deltas: tuple[str, ...] = field(default=(), repr=False)
    finish_reason: str | None = None
    """``stop`` or ``length`` (ask with ``outputs=["finish_reason"]``)."""
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    """Tokens of the prompt and of the answer (ask with ``outputs=[...]``)."""
    logprobs: list | None = field(default=None, repr=False)
    """One ``{token id: {logprob, rank, decoded_token}}`` per generated token (``outputs=["logprobs"]``
    plus the sampling parameter ``logprobs``: how many alternatives per token)."""


def _combine(deltas: list[Delta]) -> dict[str, Any]:
    """A whole answer's optional outputs: the last finish reason and prompt count, summed tokens, all logprobs."""
    out: dict[str, Any] = {}
    for delta in deltas:
        if delta.finish_reason is not None:
            out["finish_reason"] = delta.finish_reason
        if delta.num_input_tokens is not None:
            out["num_input_tokens"] = delta.num_input_tokens
        if delta.num_output_tokens is not None:
            out["num_output_tokens"] = out.get("num_output_tokens", 0) + delta.num_output_tokens
        if delta.logprobs is not None:
            out["logprobs"] = out.get("logprobs", []) + delta.logprobs
    return out


def _is_pipeline(model: str) -> bool:
    return model != LLM_MODEL


def request_inputs(
    model: str,
    prompt: str | bytes,
    *,
    stream: bool,
    max_tokens: int | None = None,
    sampling: Mapping[str, Any] | str | None = None,
    prompt_is_formatted: bool = False,
    outputs: Iterable[str] = (),
) -> dict[str, Any]:
    """The input tensors (name → Python value) for ``model``: the pipeline and the LLM differ.

    ``outputs`` names optional outputs to ask for (:data:`OPTIONAL_OUTPUTS`); ``sampling`` may
    carry any vLLM ``SamplingParams`` field, e.g. ``{"structured_outputs": {"json": schema}}``.
    """
    params = json.loads(sampling) if isinstance(sampling, str) else dict(sampling or {})
    inputs: dict[str, Any] = {"text_input": prompt, "stream": stream}
    for name in outputs:
        if name not in OPTIONAL_OUTPUTS:
            raise ValueError(f"unknown optional output {name!r}; choose from {', '.join(OPTIONAL_OUTPUTS)}")
        inputs[f"return_{name}"] = True
    if _is_pipeline(model):
        if max_tokens is not None:
            inputs["max_tokens"] = max_tokens
        if prompt_is_formatted:
            inputs["prompt_is_formatted"] = True
    else:
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        inputs["exclude_input_in_output"] = True
    if params:
        inputs["sampling_parameters"] = json.dumps(params)
    return inputs


def grpc_inputs(values: Mapping[str, Any], model: str = PIPELINE_MODEL):
    """tritonclient gRPC ``InferInput`` objects for a name → value mapping, typed as ``model`` declares.

    Names the model does not declare are typed from the Python value (bool → BOOL, int → INT32,
    else BYTES), so a test can still send them and see the server's answer.
    """
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import triton_to_np_dtype

    declared = {t.name: t.wire_type for t in contract.for_model(model).inputs}
    out = []
    for name, value in values.items():
        dtype = declared.get(name)
        if dtype is None:
            dtype = "BOOL" if isinstance(value, bool) else "INT32" if isinstance(value, int) else "BYTES"
        if dtype == "BYTES":
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8", errors="surrogatepass")
            array = np.array([raw], dtype=np.object_)
        else:
            array = np.array([value], dtype=triton_to_np_dtype(dtype))
        tensor = grpcclient.InferInput(name, [1], dtype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def delta_from_result(result) -> Delta | None:
    """The piece of answer a gRPC result carries (None for an empty final response)."""
    text = result.as_numpy("text_output")
    if text is None:
        return None
    blocked = result.as_numpy("input_blocked")
    censored = result.as_numpy("censored_words")
    raw = (t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in text.reshape(-1))
    optional = {name: result.as_numpy(name) for name in OPTIONAL_OUTPUTS}
    return Delta(
        text=b"".join(raw).decode("utf-8", errors="replace"),
        blocked=bool(blocked.reshape(-1)[0]) if blocked is not None else False,
        censored=int(censored.reshape(-1)[0]) if censored is not None else 0,
        **_optional_values({k: v.reshape(-1)[0] for k, v in optional.items() if v is not None}),
    )


def _optional_values(first: Mapping[str, Any]) -> dict[str, Any]:
    """The optional outputs of one response (first element each, as sent) as Python values."""
    def text(value) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    out: dict[str, Any] = {}
    if "finish_reason" in first:
        reason = text(first["finish_reason"])
        out["finish_reason"] = None if reason == "None" else reason
    for name in ("num_input_tokens", "num_output_tokens"):
        if name in first:
            out[name] = int(first[name])
    if "logprobs" in first:
        out["logprobs"] = json.loads(text(first["logprobs"]))
    return out


FINAL_PARAMETER = "triton_final_response"


def is_final(result) -> bool:
    """Whether a decoupled model flagged this gRPC result as the last of its request."""
    params = result.get_response().parameters
    return FINAL_PARAMETER in params and params[FINAL_PARAMETER].bool_param


class Client:
    """Talks to one server; ``model`` defaults to the guarded pipeline.

    ``grpc_url`` is the gRPC endpoint's ``host:port`` (``grpc://host:port`` is accepted too);
    ``http_url`` (``http://host:port``) is needed for ``protocol="http"``.
    """

    def __init__(
        self,
        grpc_url: str = "127.0.0.1:8001",
        http_url: str | None = None,
        *,
        model: str = PIPELINE_MODEL,
        protocol: str = "grpc",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        if protocol not in ("grpc", "http"):
            raise ValueError("protocol must be 'grpc' or 'http'")
        if protocol == "http" and not http_url:
            raise ValueError("protocol='http' needs http_url")
        self.grpc_address = to_grpc_address(grpc_url)
        self.http_url = http_url
        self.model = model
        self.protocol = protocol
        self.timeout_s = timeout_s

    @classmethod
    def from_state(cls, **kwargs) -> "Client":
        """A client for the detached server recorded by ``python -m kit serve --detach``."""
        from kit.detached import read_state

        state = read_state()
        if not state:
            raise ServerError("no server is running: start one with `python -m kit serve --detach`")
        return cls(state.endpoints.grpc_address, state.endpoints.http_url, **kwargs)

    # ------------------------------------------------------------------ public API
    def stream(self, prompt: str, *, model: str | None = None, **options) -> Iterator[Delta]:
        """Yield the answer piece by piece as the server sends it."""
        model = model or self.model
        inputs = request_inputs(model, prompt, stream=True, **options)
        if self.protocol == "http":
            yield from self._http_stream(model, inputs)
        else:
            yield from self._grpc_stream(model, inputs)

    def generate(self, prompt: str, *, model: str | None = None, stream: bool = False, **options) -> Result:
        """The whole answer. ``stream=True`` asks the server to stream and joins the pieces."""
        model = model or self.model
        started = time.perf_counter()
        first = None
        deltas: list[Delta] = []
        inputs = request_inputs(model, prompt, stream=stream, **options)
        if self.protocol == "http" and not stream:
            source = iter([self._http_generate(model, inputs)])
        elif self.protocol == "http":
            source = self._http_stream(model, inputs)
        else:
            source = self._grpc_stream(model, inputs)
        for delta in source:
            if first is None and delta.text:
                first = time.perf_counter()
            deltas.append(delta)
        done = time.perf_counter()
        return Result(
            text="".join(d.text for d in deltas),
            blocked=any(d.blocked for d in deltas),
            censored=sum(d.censored for d in deltas),
            ttft_s=(first or done) - started,
            latency_s=done - started,
            chunks=sum(1 for d in deltas if d.text),
            model=model,
            deltas=tuple(d.text for d in deltas),
            **_combine(deltas),
        )

    # ------------------------------------------------------------------ gRPC
    def _grpc_stream(self, model: str, inputs: Mapping[str, Any]) -> Iterator[Delta]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        answers: queue.Queue = queue.Queue()
        client = grpcclient.InferenceServerClient(self.grpc_address)
        try:
            client.start_stream(callback=lambda result, error: answers.put((result, error)))
            client.async_stream_infer(
                model, grpc_inputs(inputs, model), request_id=uuid.uuid4().hex, enable_empty_final_response=True
            )
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    result, error = answers.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise InferenceError(f"no answer from {model} within {self.timeout_s:.0f}s") from None
                if error is not None:
                    raise _grpc_error(model, error)
                delta = delta_from_result(result)
                if delta is not None:
                    yield delta
                if is_final(result):
                    return
        except InferenceServerException as exc:
            raise _grpc_error(model, exc) from None
        finally:
            client.stop_stream(cancel_requests=True)
            client.close()

    # ------------------------------------------------------------------ HTTP
    def _post(self, url: str, inputs: Mapping[str, Any]):
        body = json.dumps({k: (_utf8(k, v) if isinstance(v, bytes) else v) for k, v in inputs.items()})
        req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise InferenceError(_http_error(exc.read()), status=str(exc.code)) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            raise InferenceError(CONNECTION_LOST.format(detail=exc), status="UNAVAILABLE") from None

    def _http_generate(self, model: str, inputs: Mapping[str, Any]) -> Delta:
        with self._post(f"{self.http_url}/v2/models/{model}/generate", inputs) as resp:
            with _connection_lost_as_error(model):
                return _delta_from_json(json.loads(resp.read()))

    def _http_stream(self, model: str, inputs: Mapping[str, Any]) -> Iterator[Delta]:
        with self._post(f"{self.http_url}/v2/models/{model}/generate_stream", inputs) as resp:
            with _connection_lost_as_error(model):
                for raw in resp:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:  # an error can follow a 200 status: check every event
                        raise InferenceError(f"{model}: {event['error']}")
                    yield _delta_from_json(event)
                # http.client ends the iteration quietly when the connection drops between chunks
                # (its peek swallows IncompleteRead): only a read terminating chunk clears chunk_left.
                if resp.chunked and resp.chunk_left is not None:
                    raise ConnectionError("the answer ended without its terminating chunk")


@contextlib.contextmanager
def _connection_lost_as_error(model: str):
    """An HTTP connection that breaks mid-answer raises :data:`CONNECTION_LOST` as an InferenceError."""
    try:
        yield
    except (http.client.HTTPException, ConnectionError) as exc:
        raise InferenceError(f"{model}: " + CONNECTION_LOST.format(detail=repr(exc)), status="UNAVAILABLE") from None


def _grpc_error(model: str, error) -> InferenceError:
    """The server's error, or :data:`CONNECTION_LOST` when the connection itself went away."""
    status = str(error.status())
    if "UNAVAILABLE" in status:
        return InferenceError(f"{model}: " + CONNECTION_LOST.format(detail=error.message()), status=status)
    return InferenceError(f"{model}: {error.message()}", status=status)


def _utf8(name: str, value: bytes) -> str:
    """``value`` as text for a JSON body; RequestError, as the server's over gRPC, when it is not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"input {name!r} is not valid UTF-8; encode the text as UTF-8") from None


def _http_error(body: bytes) -> str:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", errors="replace")


def _delta_from_json(event: Mapping[str, Any]) -> Delta:
    def first(value, default):
        if isinstance(value, list):
            return value[0] if value else default
        return default if value is None else value

    return Delta(
        text=first(event.get("text_output"), ""),
        blocked=bool(first(event.get("input_blocked"), False)),
        censored=int(first(event.get("censored_words"), 0)),
        **_optional_values({k: first(event[k], None) for k in OPTIONAL_OUTPUTS if k in event}),
    )
