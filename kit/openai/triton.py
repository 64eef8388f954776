"""The service's side of Triton: one gRPC channel, one bidirectional stream per answer.

Every answer is asked for as a stream (``stream: true``) with ``tritonclient``'s asyncio
client, streamed or not to the HTTP client: one code path, and a first piece to time.
Leaving the iterator early (the HTTP client went away, another choice failed) cancels the
gRPC call; Triton then cancels the request, and the pipeline or the vLLM backend aborts
the engine's request.

What a model can report besides text depends on the backend in front of it: the service
reads each model's metadata once and asks for ``finish_reason``, token counts and logprobs
only where the model declares them (``return_*`` inputs, NVIDIA's vLLM backend contract).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

from kit.client import OPTIONAL_OUTPUTS, delta_from_result, grpc_inputs, is_final
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.endpoints import to_grpc_address
from kit.exceptions import TritonError

EMPTY_FINAL_PARAMETER = "triton_enable_empty_final_response"
UNAVAILABLE_HINTS = ("unavailable", "not ready", "not healthy", "unknown model", "is not found",
                     "failed to connect", "connection refused", "stub process")


def status_for(message: str) -> int:
    """The HTTP status of a Triton error message.

    Triton's gRPC stream carries a decoupled model's error without its code, so the text
    decides: a model or server that is not there is 503, the models' own failures
    ("... failed: ...") are 500, anything else is the request's fault (the models answer
    bad requests with ``INVALID_ARG`` and a message saying what to fix): 400.
    """
    lowered = message.lower()
    if any(hint in lowered for hint in UNAVAILABLE_HINTS):
        return 503
    if "pipeline failed" in lowered or "generation failed" in lowered:
        return 500
    return 400


@dataclass(frozen=True)
class Piece:
    """One response of a model: new text and whatever else the model reported with it."""

    text: str = ""
    blocked: bool = False
    censored: int = 0
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None  # this response's new tokens
    logprobs: tuple[dict[str, Any], ...] = ()
    final: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A served model's declared inputs and outputs."""

    inputs: frozenset[str]
    outputs: frozenset[str]


def piece_from_result(result, top: int | None = None) -> Piece:
    """A :class:`Piece` from a gRPC ``InferResult`` (outputs the model did not send stay None).

    ``top``: how many alternatives each logprobs entry keeps (the request's ``top_logprobs``).
    """
    delta = delta_from_result(result)
    if delta is None:  # the empty final response
        return Piece(final=is_final(result))
    return Piece(text=delta.text, blocked=delta.blocked, censored=delta.censored, finish_reason=delta.finish_reason,
                 input_tokens=delta.num_input_tokens, output_tokens=delta.num_output_tokens,
                 logprobs=tuple(logprob_entries(delta.logprobs, top)), final=is_final(result))


def logprob_entries(decoded, top: int | None = None) -> list[dict[str, Any]]:
    """OpenAI's per-token entries from the backend's ``logprobs`` JSON.

    The backend (NVIDIA's contract) sends, per sequence, a list with one
    ``{token_id: {"logprob", "rank", "decoded_token"}}`` map per new token. vLLM builds each map
    with the sampled token first, then the ``top`` most likely ones (the sampled one among them
    or not), so the first entry is the token, and those of rank ≤ ``top`` its ``top_logprobs``.
    """
    if decoded and isinstance(decoded[0], list):
        decoded = decoded[0]  # one sequence per request here
    out = []
    for step in decoded or []:
        if not isinstance(step, dict) or not step:
            continue
        sampled = next(iter(step.values()))
        limit = len(step) if top is None else top
        ranked = sorted((v for v in step.values() if (v.get("rank") or 0) <= limit), key=lambda v: v.get("rank") or 0)
        out.append({**_token(sampled), "top_logprobs": [_token(v) for v in ranked]})
    return out


def _token(entry: Mapping[str, Any]) -> dict[str, Any]:
    text = str(entry.get("decoded_token") or "")
    return {"token": text, "logprob": entry.get("logprob"), "bytes": list(text.encode("utf-8"))}


class TritonModels:
    """The Triton server behind the service (``host:port`` of its gRPC endpoint)."""

    def __init__(self, grpc_url: str):
        self.target = to_grpc_address(grpc_url)
        self._client = None
        self._info: dict[str, ModelInfo] = {}

    @property
    def client(self):
        if self._client is None:  # created on the service's event loop
            import tritonclient.grpc.aio as aioclient

            self._client = aioclient.InferenceServerClient(self.target)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ready(self) -> bool:
        """Whether the server and both served models are ready."""
        try:
            if not await self.client.is_server_ready(client_timeout=5):
                return False
            return all([await self.client.is_model_ready(m, client_timeout=5) for m in (PIPELINE_MODEL, LLM_MODEL)])
        except Exception:  # noqa: BLE001 - any failure to answer means not ready
            return False

    async def info(self, model: str) -> ModelInfo:
        """The model's declared inputs and outputs (read once)."""
        if model not in self._info:
            meta = await self._call(self.client.get_model_metadata(model, as_json=True, client_timeout=10))
            self._info[model] = ModelInfo(frozenset(t["name"] for t in meta.get("inputs", [])),
                                          frozenset(t["name"] for t in meta.get("outputs", [])))
        return self._info[model]

    async def pipeline_parameters(self) -> dict[str, str]:
        """The pipeline's config parameters (its tokenizer folder, context length, refusal)."""
        config = await self._call(self.client.get_model_config(PIPELINE_MODEL, as_json=True, client_timeout=10))
        params = config.get("config", {}).get("parameters", {})
        return {k: v.get("string_value", "") for k, v in params.items()}

    async def _call(self, coro):
        from tritonclient.utils import InferenceServerException

        try:
            return await coro
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            raise TritonError(f"the Triton server at {self.target} is not ready ({message}); "
                              "start it with `python -m kit serve`", 503) from None

    def inputs(self, model: str, info: ModelInfo, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {"text_input": prompt, "stream": True,
                                  "sampling_parameters": json.dumps(params, sort_keys=True)}
        if model == LLM_MODEL:
            values["exclude_input_in_output"] = True
        else:
            values["prompt_is_formatted"] = True  # the service applied the chat template already
        for name in OPTIONAL_OUTPUTS:
            if f"return_{name}" in info.inputs and (name != "logprobs" or "logprobs" in params):
                values[f"return_{name}"] = True
        return values

    async def stream(self, model: str, prompt: str, params: Mapping[str, Any]) -> AsyncIterator[Piece]:
        """The model's answer piece by piece; raises :class:`TritonError`. Closing it early cancels the request."""
        import grpc
        from tritonclient.utils import InferenceServerException

        info = await self.info(model)
        outputs = [name for name in ("text_output", "input_blocked", "censored_words", *OPTIONAL_OUTPUTS)
                   if name in info.outputs]
        import tritonclient.grpc as grpcclient

        request = {"model_name": model, "inputs": grpc_inputs(self.inputs(model, info, prompt, params), model),
                   "outputs": [grpcclient.InferRequestedOutput(name) for name in outputs],
                   "request_id": uuid.uuid4().hex, "parameters": {EMPTY_FINAL_PARAMETER: True}}

        async def one():
            yield request

        call = self.client.stream_infer(one())
        finished = False
        try:
            async for result, error in call:
                if error is not None:
                    message = error.message() or str(error)
                    raise TritonError(message, status_for(message))
                piece = piece_from_result(result, params.get("logprobs"))
                yield piece
                if piece.final:
                    finished = True
                    return
            raise TritonError(f"{model} closed its stream without a final response", 500)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            raise TritonError(message, status_for(message)) from None
        except grpc.RpcError as exc:  # the channel itself failed: no server at that address
            raise TritonError(f"the Triton server at {self.target} is not reachable ({exc.code().name}); "
                              "start it with `python -m kit serve`", 503) from None
        finally:
            if not finished:
                call.cancel()  # Triton cancels the request, and the model its engine request
