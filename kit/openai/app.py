"""The ASGI application: FastAPI routes over :mod:`kit.openai.protocol` and :mod:`kit.openai.triton`.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``, and
``GET /health`` (200 when Triton, both models and the chat template are ready, else 503; never
needs the key).

* Streaming answers are server-sent events (``sse-starlette``): one ``data: {chunk}`` per
  piece, ``data: [DONE]`` last. The first piece is awaited before the HTTP status is sent,
  so a request the models refuse gets its error status, streamed or not.
* A refused prompt ends with ``finish_reason: "content_filter"`` and the refusal text;
  every choice carries ``censored_words``, the banned words the pipeline masked in it. The
  pipeline's streaming censor runs before anything leaves Triton, so no banned word reaches
  an SSE client either.
* Errors are OpenAI error objects with their status (400, 401, 404, 500, 503); the
  traceback of an unexpected failure goes to the log, never to the client.
* ``usage`` and ``finish_reason`` are the engine's (``num_input_tokens``, ``num_output_tokens``,
  ``finish_reason``, which both models report); with a backend that does not report them, the
  served tokenizer counts the text (an estimate) and a full budget reads as ``length``.
* A client that goes away (stream or not) cancels its Triton requests.
* ``Authorization: Bearer <key>`` is required when a key is set (compared in constant time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from kit.config import LLM_MODEL
from kit.openai import protocol
from kit.openai.protocol import APIError, Choice, Job
from kit.openai.triton import Piece, TritonModels

log = logging.getLogger("kit.openai")
API_KEY_VARIABLES = ("KIT_OPENAI_API_KEY",)
DISCONNECT_POLL_S = 0.25


@dataclass(frozen=True)
class Settings:
    """How the service reaches Triton and whom it serves.

    ``tokenizer``: the folder whose chat template formats messages (default: the pipeline's
    ``tokenizer`` parameter, read from Triton). ``api_key``: None serves everyone.
    """

    grpc_url: str = "127.0.0.1:8001"  # host:port (grpc://host:port is accepted too)
    api_key: str | None = None
    tokenizer: str | None = None


class Backend:
    """Triton plus the served model's tokenizer, loaded on first use (Triton may still be starting)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = TritonModels(settings.grpc_url)
        self.formatter = None
        self._lock = asyncio.Lock()

    async def ensure(self):
        """The prompt formatter; raises 503 while Triton cannot say which tokenizer it serves."""
        if self.formatter is not None:
            return self.formatter
        async with self._lock:
            if self.formatter is None:
                from kit.pipeline import PromptFormatter

                params = await self.models.pipeline_parameters()
                path = self.settings.tokenizer or params.get("tokenizer")
                if not path:
                    raise APIError(503, "the pipeline does not name its tokenizer; start the service with --tokenizer")
                max_len = params.get("max_model_len") or None
                self.formatter = await asyncio.to_thread(PromptFormatter.load, path, int(max_len) if max_len else None)
        return self.formatter


# --------------------------------------------------------------------------- one job


def _finish(choice: Choice, job: Job, formatter) -> None:
    """Close a choice: its finish reason and token counts, from the model where it reports them."""
    text = "".join(choice.text)
    if not choice.completion_tokens and text and not choice.blocked:
        choice.completion_tokens = formatter.count_tokens(text) - formatter.count_tokens("")  # no counts reported
    if not choice.prompt_tokens:
        choice.prompt_tokens = formatter.count_tokens(job.prompt_of(choice.index))
    if choice.blocked:
        choice.finish_reason = "content_filter"
        choice.completion_tokens = 0
    elif choice.finish_reason not in ("stop", "length"):  # not reported: infer it from the budget
        choice.finish_reason = "length" if choice.completion_tokens >= job.max_tokens else "stop"


def _absorb(choice: Choice, piece: Piece) -> None:
    choice.text.append(piece.text)
    choice.censored += piece.censored
    choice.blocked = choice.blocked or piece.blocked
    if piece.input_tokens:
        choice.prompt_tokens = piece.input_tokens
    if piece.output_tokens:
        choice.completion_tokens += piece.output_tokens
    choice.logprobs.extend(piece.logprobs)
    if piece.finish_reason:
        choice.finish_reason = piece.finish_reason


async def pieces(backend: Backend, job: Job) -> AsyncIterator[tuple[Choice, Piece]]:
    """Every choice's pieces as they come, each with its choice's state (updated); cancels all on exit."""
    formatter = await backend.ensure()
    if job.logprobs is not None and "logprobs" not in (await backend.models.info(job.model)).outputs:
        raise APIError(400, f"{job.model} does not report logprobs on this server; drop logprobs",
                       param="logprobs", code="unsupported_parameter")
    queue: asyncio.Queue = asyncio.Queue()
    choices = [Choice(index=k) for k in range(job.choices)]

    async def run(choice: Choice) -> None:
        try:
            async for piece in backend.models.stream(job.model, job.prompt_of(choice.index),
                                                     job.choice_sampling(choice.index)):
                _absorb(choice, piece)
                if piece.final:
                    _finish(choice, job, formatter)
                await queue.put((choice, piece))
        except BaseException as exc:
            await queue.put((choice, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    tasks = [asyncio.create_task(run(c)) for c in choices]
    done = 0
    try:
        while done < len(choices):
            choice, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item.final:
                done += 1
            yield choice, item
    finally:
        for task in tasks:
            task.cancel()  # a client gone or a failed choice: cancel every Triton request still open
        await asyncio.gather(*tasks, return_exceptions=True)


async def answer(backend: Backend, job: Job) -> dict[str, Any]:
    """The whole answer (non-streaming)."""
    choices: dict[int, Choice] = {}
    async for choice, _ in pieces(backend, job):
        choices[choice.index] = choice
    return protocol.response(job, list(choices.values()))


async def events(backend: Backend, job: Job) -> AsyncIterator[dict[str, Any]]:
    """The answer as chunks (dicts); the first is produced only once Triton sent something."""
    started: set[int] = set()
    choices: dict[int, Choice] = {}
    async for choice, piece in pieces(backend, job):
        choices[choice.index] = choice
        first = choice.index not in started
        if piece.text or (first and piece.blocked):
            started.add(choice.index)
            yield protocol.chunk(job, choice.index, text=piece.text, first=first, logprobs=piece.logprobs)
        if piece.final:
            if choice.index not in started:
                started.add(choice.index)
                yield protocol.chunk(job, choice.index, text="", first=True)
            yield protocol.chunk(job, choice.index, finish_reason=choice.finish_reason, censored=choice.censored)
    if job.include_usage:
        yield protocol.usage_chunk(job, list(choices.values()))


# --------------------------------------------------------------------------- HTTP


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _body(request: Request, model: type) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc}); send a JSON object",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise protocol.validation_error(exc) from None


async def _until_disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


async def _respond(request: Request, backend: Backend, job: Job):
    if not job.stream:
        work = asyncio.ensure_future(answer(backend, job))
        watch = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            gone = not work.done()
            if gone:  # the client went away: cancel the Triton requests
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if gone:
            return JSONResponse({}, status_code=499)
        return JSONResponse(work.result())

    stream = events(backend, job)
    try:
        first = await stream.__anext__()  # an error before the first piece keeps its HTTP status
    except StopAsyncIteration:
        first = None

    async def sse():
        try:
            if first is not None:
                yield {"data": json.dumps(first)}
            async for item in stream:
                yield {"data": json.dumps(item)}
        except APIError as exc:  # after the 200: the error as the stream's last event
            yield {"data": json.dumps(exc.body())}
        except Exception as exc:
            log.exception("stream failed")
            yield {"data": json.dumps(APIError(500, f"the service failed ({type(exc).__name__}); see its log").body())}
        finally:
            await stream.aclose()  # a client gone mid-stream lands here: cancels the Triton requests
        yield {"data": "[DONE]"}

    # "\n" line ends, as OpenAI's and vLLM's servers send them: some clients (vllm bench serve among them)
    # split events on a blank line written "\n\n" only, though SSE also allows "\r\n".
    return EventSourceResponse(sse(), ping=15, sep="\n")


def create_app(settings: Settings) -> FastAPI:
    """The service for one Triton server."""
    backend = Backend(settings)
    created = int(time.time())
    key = settings.api_key.encode() if settings.api_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await backend.models.close()

    app = FastAPI(title="triton-vllm-guardrails-kit OpenAI API", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.backend = backend

    def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key):
            raise APIError(401, "invalid or missing API key; send `Authorization: Bearer <key>`",
                           code="invalid_api_key")

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return _error(protocol.validation_error(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        status = exc.status_code
        message = "no such route; see /v1/models, /v1/chat/completions, /v1/completions" if status == 404 \
            else str(exc.detail)
        return _error(APIError(status, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("request failed")
        return _error(APIError(500, f"the service failed ({type(exc).__name__}); see its log"))

    @app.get("/health")
    async def health():
        if await backend.models.ready():
            await backend.ensure()  # ready means ready to answer: the chat template is loaded too
            return {"status": "ready"}
        return _error(APIError(503, f"Triton at {backend.models.target} or one of its models is not ready"))

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return protocol.models_list(created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorize(request)
        body = await _body(request, protocol.ChatRequest)
        protocol.check_model(body.model)
        formatter = await backend.ensure()
        job = protocol.chat_job(body, formatter.chat_text, max_context=formatter.max_context)
        return await _respond(request, backend, job)

    @app.post("/v1/completions")
    async def completions(request: Request):
        authorize(request)
        body = await _body(request, protocol.CompletionRequest)
        protocol.check_model(body.model)
        formatter = await backend.ensure()
        job = protocol.completion_job(body, max_context=formatter.max_context)
        return await _respond(request, backend, job)

    return app


__all__ = ["API_KEY_VARIABLES", "Settings", "create_app", "LLM_MODEL"]
