"""The OpenAI API's request and response shapes, and how they map onto the kit's models.

Pure logic (pydantic and the kit's own validation, no HTTP, no Triton), so every rule is
unit-tested on its own:

* a request body → a :class:`Job`: the prompt text (chat messages through the served
  model's chat template), the vLLM sampling parameters (validated by :mod:`kit.sampling`,
  exactly as the Triton models validate them) and what the answer must carry;
* the pieces the models send back → OpenAI's ``chat.completion`` / ``text_completion``
  objects and their streamed chunks;
* every refusal of a bad request → an :class:`APIError` with OpenAI's error shape and the
  HTTP status clients expect (400, 401, 404, 503).

Source of the shapes: OpenAI's API reference (chat completions, completions, models,
errors). vLLM's server accepts the same extra sampling fields in the body (``top_k``,
``ignore_eos``, ``allowed_token_ids``...), and so does this one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit import sampling
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import APIError, RequestError

MODELS = (PIPELINE_MODEL, LLM_MODEL)
"""Served names: the guarded pipeline (the default) and the bare LLM."""
DEFAULT_MODEL = PIPELINE_MODEL
DEFAULT_MAX_TOKENS = 256  # as the pipeline's default; vLLM's own default of 16 truncates answers
MAX_CHOICES = 16  # as kit.sampling's bound on n
CENSORED_FIELD = "censored_words"
"""Extra field of every choice (and of a stream's finishing chunk): banned words masked in that answer."""

# Sampling fields vLLM's OpenAI server takes besides OpenAI's own (passed to the engine as they are).
VLLM_EXTRA_FIELDS = (
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop_token_ids", "bad_words",
    "allowed_token_ids", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
)


# --------------------------------------------------------------------------- errors


def validation_error(exc: ValidationError | Sequence[dict]) -> APIError:
    """A 400 naming the first field pydantic refused (never a stack trace)."""
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    first = errors[0] if errors else {"loc": (), "msg": "invalid request body"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    where = f"{param}: " if param else ""
    return APIError(400, f"{where}{first.get('msg', 'invalid value')}", param=param, code="invalid_value")


# --------------------------------------------------------------------------- requests


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = DEFAULT_MODEL
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extensions (see VLLM_EXTRA_FIELDS)
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    allowed_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    """One chat message; ``developer`` is OpenAI's newer name for ``system``."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatRequest(_Body):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None


class CompletionRequest(_Body):
    """``POST /v1/completions``; ``prompt`` is text or a list of texts (one answer each, times ``n``)."""

    prompt: Union[str, list[str]]
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    response_format: ResponseFormat | None = None


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class Job:
    """One validated request: ``prompts[i]`` is sent ``n`` times; choice ``k`` has index ``k``.

    ``sampling`` holds vLLM ``SamplingParams`` fields, checked by :func:`kit.sampling.parse`.
    ``prompt_is_formatted`` tells the pipeline not to apply the chat template again.
    """

    kind: Literal["chat", "completion"]
    model: str
    prompts: tuple[str, ...]
    n: int
    stream: bool
    include_usage: bool
    sampling: dict[str, Any]
    logprobs: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def max_tokens(self) -> int:
        return self.sampling["max_tokens"]

    def choice_sampling(self, choice: int) -> dict[str, Any]:
        """Choice ``choice``'s parameters: with a ``seed``, choice k samples with ``seed + k``.

        The pipeline returns one answer per request, so ``n`` answers are ``n`` requests;
        one seed for all would make them identical.
        """
        params = dict(self.sampling)
        if "seed" in params and self.n > 1:
            params["seed"] = params["seed"] + choice % self.n
        return params

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n

    def prompt_of(self, choice: int) -> str:
        return self.prompts[choice // self.n]

    @property
    def response_id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.id


def check_model(model: str) -> str:
    if model not in MODELS:
        raise APIError(404, f"the model {model!r} does not exist; this server serves {', '.join(MODELS)}",
                       param="model", code="model_not_found")
    return model


def _sampling(body: _Body, max_tokens: int | None, max_context: int | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
        "presence_penalty": body.presence_penalty, "frequency_penalty": body.frequency_penalty,
        "stop": body.stop if body.stop not in ("", []) else None,
    }
    if body.logit_bias:
        raw["logit_bias"] = body.logit_bias
    for name in VLLM_EXTRA_FIELDS:
        raw[name] = getattr(body, name)
    if max_tokens is not None and max_tokens <= 0:
        raise APIError(400, f"max_tokens must be ≥ 1, got {max_tokens}", param="max_tokens", code="invalid_value")
    raw["max_tokens"] = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    try:
        return sampling.parse(json.dumps(raw), max_context=max_context)
    except RequestError as exc:
        raise APIError(400, str(exc), code="invalid_value") from None


def _structured(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    """``response_format`` as vLLM's ``structured_outputs`` sampling field (None for plain text)."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"json_object": True}
    schema = (fmt.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise APIError(400, "response_format.json_schema.schema must be a JSON schema object",
                       param="response_format", code="invalid_value")
    return {"json": schema}


def _common(body: _Body) -> tuple[int, bool]:
    if not 1 <= body.n <= MAX_CHOICES:
        raise APIError(400, f"n must be between 1 and {MAX_CHOICES}, got {body.n}", param="n", code="invalid_value")
    include_usage = bool((body.stream_options or {}).get("include_usage")) if body.stream else False
    if body.stream_options and not body.stream:
        raise APIError(400, "stream_options is only allowed with stream: true", param="stream_options")
    return body.n, include_usage


def chat_job(body: ChatRequest, chat_text, *, max_context: int | None = None) -> Job:
    """A chat request as a :class:`Job`; ``chat_text(messages)`` applies the served model's chat template."""
    model = check_model(body.model)
    n, include_usage = _common(body)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    if not any(m["content"].strip() for m in messages):
        raise APIError(400, "every message is empty; send the question in a user message", param="messages")
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    params = _sampling(body, max_tokens, max_context)
    logprobs = None
    if body.logprobs:
        logprobs = body.top_logprobs or 0
        if not 0 <= logprobs <= 20:
            raise APIError(400, f"top_logprobs must be between 0 and 20, got {logprobs}", param="top_logprobs")
        params["logprobs"] = logprobs
    elif body.top_logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    structured = _structured(body.response_format)
    if structured:
        params["structured_outputs"] = structured
    try:
        prompt = chat_text(messages)
    except Exception as exc:  # noqa: BLE001 - a template's own refusal, e.g. roles that must alternate
        raise APIError(400, f"the model's chat template refused these messages: {exc}", param="messages") from None
    return Job("chat", model, (prompt,), n, body.stream, include_usage, params, logprobs)


def completion_job(body: CompletionRequest, *, max_context: int | None = None) -> Job:
    """A completion request as a :class:`Job` (the prompt goes to the model as it is)."""
    model = check_model(body.model)
    n, include_usage = _common(body)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts or not all(p.strip() for p in prompts):
        raise APIError(400, "prompt is empty; send the text to complete", param="prompt")
    if len(prompts) * n > MAX_CHOICES:
        raise APIError(400, f"{len(prompts)} prompts × n={n} exceeds {MAX_CHOICES} answers per request", param="n")
    if body.echo or body.suffix:
        raise APIError(400, "echo and suffix are not supported; drop them", param="echo" if body.echo else "suffix")
    params = _sampling(body, body.max_tokens, max_context)
    if body.logprobs is not None:
        if not 0 <= body.logprobs <= 20:
            raise APIError(400, f"logprobs must be between 0 and 20, got {body.logprobs}", param="logprobs")
        params["logprobs"] = body.logprobs
    structured = _structured(body.response_format)
    if structured:
        params["structured_outputs"] = structured
    return Job("completion", model, tuple(prompts), n, body.stream, include_usage, params, body.logprobs)


# --------------------------------------------------------------------------- answers


@dataclass
class Choice:
    """What one answer has gathered so far (text, counts, end)."""

    index: int
    text: list[str] = field(default_factory=list)
    censored: int = 0
    blocked: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[dict[str, Any]] = field(default_factory=list)


def usage(choices: Sequence[Choice], job: Job) -> dict[str, int]:
    """OpenAI's ``usage``: each prompt counted once, every answer's tokens."""
    prompt = sum(max((c.prompt_tokens for c in choices if c.index // job.n == p), default=0)
                 for p in range(len(job.prompts)))
    completion = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprobs(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"content": list(entries)}


def completion_logprobs(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, logprobs, top-logprob maps and text offsets."""
    tokens = [e["token"] for e in entries]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {
        "tokens": tokens,
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
        "text_offset": offsets,
    }


def response(job: Job, choices: Sequence[Choice]) -> dict[str, Any]:
    """The whole answer: ``chat.completion`` or ``text_completion``."""
    out = []
    for c in sorted(choices, key=lambda c: c.index):
        text = "".join(c.text)
        item: dict[str, Any] = {"index": c.index, "finish_reason": c.finish_reason, CENSORED_FIELD: c.censored}
        if job.kind == "chat":
            item["message"] = {"role": "assistant", "content": text}
            item["logprobs"] = chat_logprobs(c.logprobs) if job.logprobs is not None else None
        else:
            item["text"] = text
            item["logprobs"] = completion_logprobs(c.logprobs) if job.logprobs is not None else None
        out.append(item)
    return {"id": job.response_id, "object": "chat.completion" if job.kind == "chat" else "text_completion",
            "created": job.created, "model": job.model, "choices": out, "usage": usage(choices, job)}


def chunk(job: Job, index: int, *, text: str | None = None, first: bool = False, finish_reason: str | None = None,
          censored: int | None = None, logprobs: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One streamed chunk of choice ``index``: new text, and/or its end with ``finish_reason``."""
    choice: dict[str, Any] = {"index": index, "finish_reason": finish_reason}
    if job.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        choice["delta"] = delta
        choice["logprobs"] = chat_logprobs(logprobs) if logprobs else None
    else:
        choice["text"] = text or ""
        choice["logprobs"] = completion_logprobs(logprobs) if logprobs else None
    if censored is not None:
        choice[CENSORED_FIELD] = censored
    return {"id": job.response_id, "object": "chat.completion.chunk" if job.kind == "chat" else "text_completion",
            "created": job.created, "model": job.model, "choices": [choice]}


def usage_chunk(job: Job, choices: Sequence[Choice]) -> dict[str, Any]:
    """The last chunk with ``stream_options.include_usage``: no choices, the usage."""
    return {"id": job.response_id, "object": "chat.completion.chunk" if job.kind == "chat" else "text_completion",
            "created": job.created, "model": job.model, "choices": [], "usage": usage(choices, job)}


def models_list(created: int) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "triton-vllm-guardrails-kit"}
        for name in MODELS
    ]}
