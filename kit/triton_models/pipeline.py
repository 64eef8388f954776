"""``llama_bls_ensemble``: the guarded pipeline as a decoupled Python model using BLS.

input guard → ``llama3-8b-instruct`` (streamed through BLS) → streaming censor → client.

In ``async`` mode ``execute`` only hands each request to a worker thread and
returns, so the next request is accepted at once and every request waits on
the LLM concurrently (the engine batches them). In ``blocking`` mode each
request is handled to the end inside ``execute``: one at a time per instance,
which reproduces the original showcase's flat throughput for comparison.

A client that does not stream gets its answer from a non-streaming LLM request: one BLS
response instead of one per delta, censored in one piece (the streaming censor's output equals
the one-shot censor's). Cancellation is asked about by one
:class:`~kit.triton_models.responses.CancelWatcher` per instance for every request in flight,
streaming or not, and aborts the LLM request (``cancel()`` where the server's BLS has it, else a
file in the LLM's :class:`~kit.aborts.AbortMailbox`: an abort sent as a second BLS
request crashed Triton 2.51); the worker then ends with a CANCELLED error.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

from kit import aborts, contract
from kit.contract import CANCELLED_MESSAGE, ID_PARAMETER
from kit.exceptions import RequestError
from kit.guardrails import Guard
from kit.pipeline import PromptFormatter, check_request, llm_sampling_json
from kit.triton_models import tensors
from kit.triton_models.load_gauges import LoadGauges
from kit.triton_models.responses import CancelWatcher

MAX_WORKERS = 1024


def guard_from_parameters(params: dict[str, str]) -> Guard:
    return Guard(
        extra_words=json.loads(params.get("extra_words") or "[]"),
        allow_words=json.loads(params.get("allow_words") or "[]"),
        policy=params.get("policy") or "default",
        actions=json.loads(params.get("actions") or "{}"),
    )


class GuardMetrics:
    """Guard counters on Triton's metrics port, labelled by model.

    ``kit_guard_matches_total`` counts the guard's matches per category and
    direction (``where``: input or output), labelled with the category's action,
    so that counted-only categories are visible too.

    Worker threads only add to plain counters under a lock; one flusher thread
    hands the totals to Triton twice a second. Triton 2.51's Python backend
    crashed the server when many threads called the metric API at once.
    """

    NAMES = {
        "requests": ("kit_guard_requests_total", "Requests seen by the guarded pipeline"),
        "blocked": ("kit_guard_prompts_blocked_total", "Prompts refused by the input guard"),
        "censored": ("kit_guard_words_censored_total", "Words censored in model output"),
        "guard_us": ("kit_guard_time_us_total", "Time spent in the guard (input check + censor), µs"),
        "errors": ("kit_pipeline_errors_total", "Requests answered with an error"),
    }
    MATCHES = ("kit_guard_matches_total", "Guard matches per category and direction (input/output)")
    FLUSH_S = 0.5

    def __init__(self, model: str, actions: dict[str, str] | None = None):
        self.families = []  # Triton needs each family to outlive its metrics
        self.metrics = {}
        for key, (name, description) in self.NAMES.items():
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
            self.families.append(family)
            self.metrics[key] = family.Metric(labels={"model": model})
        looked_for = {c: a for c, a in (actions or {}).items() if a != "allow"}
        if looked_for:
            family = pb_utils.MetricFamily(name=self.MATCHES[0], description=self.MATCHES[1],
                                           kind=pb_utils.MetricFamily.COUNTER)
            self.families.append(family)
            for category, action in looked_for.items():
                for where in ("input", "output"):
                    labels = {"model": model, "category": category, "action": action, "where": where}
                    self.metrics[(where, category)] = family.Metric(labels=labels)
        self.keys = list(self.metrics)
        self.pending = dict.fromkeys(self.keys, 0.0)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="guard-metrics", daemon=True)
        self.thread.start()

    def add(self, key: str | tuple[str, str], value: float = 1) -> None:
        with self.lock:
            self.pending[key] += value

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, dict.fromkeys(self.keys, 0.0)
        for key, value in pending.items():
            if value:
                self.metrics[key].increment(value)

    def _run(self) -> None:
        while not self.stopped.wait(self.FLUSH_S):
            self.flush()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.flush()
        self.metrics.clear()  # the metrics before their families (the other order crashes the stub)
        self.families.clear()


class IteratorKeeper:
    """Keeps finished BLS response iterators alive a while, so that Python releases them last.

    Triton 2.51's stub also holds every BLS response iterator in a map, which a C++ thread
    of its own empties once the last response arrived. That thread does not hold the GIL:
    when its release is the last one, the iterator's tensors free their numpy arrays without
    it, and Python 3.12's allocator dereferences a missing thread state (``segfault at 10``
    in libpython; 3.11 corrupts its heap instead). Holding each iterator for
    :data:`GRACE_S` after its stream ended — far longer than the stub takes to empty its
    map — leaves the last release to a Python thread, which holds the GIL.
    ``KIT_BLS_KEEP_S`` in the server's environment overrides the period
    (``benchmarks/bls_stress.py`` uses 0 to show the crash).
    """

    GRACE_S = float(os.environ.get("KIT_BLS_KEEP_S", "2.0"))

    def __init__(self):
        self._kept: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def keep(self, *iterators) -> None:
        """Hold ``iterators`` for the grace period; let go of those whose period is over."""
        now = time.monotonic()
        expired = []
        with self._lock:
            self._kept.extend((now + self.GRACE_S, it) for it in iterators)
            while self._kept and self._kept[0][0] <= now:
                expired.append(self._kept.popleft())
        del expired  # released here, outside the lock, by a thread that holds the GIL

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


class LLMExtras:
    """The optional outputs of the LLM's responses since the pipeline last answered, merged.

    The streaming censor holds text back, so one pipeline response may stand for several LLM
    responses: token counts add up, logprobs lists are joined, the prompt's token count is the
    latest seen, and the LLM's finish reason goes to the pipeline's final response.
    """

    def __init__(self, names: list[str]):
        self.names = names
        self.finish_reason = "None"
        self.num_input_tokens = 0
        self.has_logprobs = False  # the LLM sends null when the request set no sampling `logprobs`
        self._reset()

    def _reset(self) -> None:
        self.num_output_tokens = 0
        self.logprobs: list | None = [] if self.has_logprobs else None

    def add(self, response) -> None:
        if not self.names:
            return

        def first(name):
            tensor = pb_utils.get_output_tensor_by_name(response, name)
            return None if tensor is None else tensor.as_numpy().reshape(-1)[0]

        if (reason := first("finish_reason")) is not None:
            self.finish_reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        if (count := first("num_input_tokens")) is not None:
            self.num_input_tokens = int(count)
        if (count := first("num_output_tokens")) is not None:
            self.num_output_tokens += int(count)
        if (raw := first("logprobs")) is not None:
            entries = json.loads(raw)
            if entries is not None:
                self.has_logprobs = True
                self.logprobs = (self.logprobs or []) + entries

    def take(self, final: bool = False) -> dict:
        """The values for the next pipeline response (name → value), then start counting afresh.

        The finish reason goes only to the ``final`` response (the others say None, like the LLM's).
        """
        values = {
            "finish_reason": self.finish_reason if final else "None",
            "num_input_tokens": self.num_input_tokens,
            "num_output_tokens": self.num_output_tokens,
            "logprobs": json.dumps(self.logprobs),
        }
        self._reset()
        return {name: values[name] for name in self.names}


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        params = tensors.config_parameters(self.model_config)
        self.name = args["model_name"]
        self.mode = params.get("bls_mode", "async")
        self.llm_model = params.get("llm_model", "llama3-8b-instruct")
        self.block_input = params.get("block_input", "true") == "true"
        self.censor_output = params.get("censor_output", "true") == "true"
        self.refusal = params.get("refusal") or "Sorry, I can't help with that."
        self.guard = guard_from_parameters(params)
        # The streaming censor's expression is compiled on first use (~0.7 s of pure-Python work
        # holding the GIL): do it now, while the model loads, not inside the first request.
        self.guard.stream().close()
        max_len = params.get("max_model_len") or None
        self.formatter = PromptFormatter.load(params["tokenizer"], int(max_len) if max_len else None)
        self.max_context = self.formatter.max_context
        self.metrics = GuardMetrics(self.name, self.guard.actions)
        self.load = LoadGauges(self.name, args["model_instance_name"])
        self.keeper = IteratorKeeper()
        self.aborts = aborts.AbortMailbox(aborts.folder(self.llm_model))
        self.llm_streams: dict[str, object] = {}  # request id → its BLS response iterator, while in flight
        self.watcher = CancelWatcher(self._abort_llm, name="bls-cancel-watch", log=pb_utils.Logger.log_warn)
        self.pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="bls") if self.mode == "async" else None
        pb_utils.Logger.log_info(f"{self.name}: bls_mode={self.mode}, context={self.max_context}")

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            load = self.load.start()
            if self.pool is None:
                self._handle(request, sender, load)
            else:
                self.pool.submit(self._handle, request, sender, load)
        return None

    # ------------------------------------------------------------------ one request
    def _respond(self, text: str, blocked: bool, censored: int, extras: dict | None = None):
        """One response; ``extras`` holds the optional outputs the client asked for (name → value)."""
        out = [
            tensors.bytes_tensor("text_output", [text]),
            pb_utils.Tensor("input_blocked", np.array([blocked], dtype=np.bool_)),
            pb_utils.Tensor("censored_words", np.array([censored], dtype=np.int32)),
        ]
        for name, value in (extras or {}).items():
            if name in ("finish_reason", "logprobs"):
                out.append(tensors.bytes_tensor(name, [value]))
            else:
                out.append(pb_utils.Tensor(name, np.array([value], dtype=np.uint32)))
        return pb_utils.InferenceResponse(output_tensors=out)

    def _handle(self, request, sender, load) -> None:
        """Answer one request completely; every path ends with a final flag."""
        self.metrics.add("requests")
        try:
            req = check_request(
                tensors.text(request, "text_input"),
                stream=tensors.flag(request, "stream"),
                max_tokens=tensors.integer(request, "max_tokens"),
                sampling_json=tensors.optional(request, "sampling_parameters"),
                prompt_is_formatted=tensors.flag(request, "prompt_is_formatted"),
                max_context=self.max_context,
            )
            extras = [name for name in contract.PIPELINE_EXTRAS if tensors.flag(request, f"return_{name}")]
            if "logprobs" in extras and self.censor_output:
                raise RequestError(
                    "return_logprobs is refused while the output censor is on: the tokens would reveal the "
                    "censored words; drop return_logprobs or serve a pipeline with censor_output false"
                )
            started = time.perf_counter()
            found = self.guard.find(req.prompt)
            blocked = self.block_input and any(m.action == "block" for m in found)
            self.metrics.add("guard_us", (time.perf_counter() - started) * 1e6)
            for match in found:
                self.metrics.add(("input", match.category))
            if blocked:
                self.metrics.add("blocked")
                nothing = {"finish_reason": "stop", "num_input_tokens": 0, "num_output_tokens": 0, "logprobs": "[]"}
                sender.send(self._respond(self.refusal, True, 0, {k: nothing[k] for k in extras}), flags=tensors.FINAL)
                return
            prompt = self.formatter.format(req)
            self._generate(req, prompt, sender, extras, load)
        except RequestError as exc:
            self.metrics.add("errors")
            tensors.send_error(sender, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the client waiting
            self.metrics.add("errors")
            pb_utils.Logger.log_error(f"{self.name}: request failed: {exc!r}")
            tensors.send_error(sender, f"pipeline failed: {exc}", pb_utils.TritonError.INTERNAL)
        finally:
            load.done()

    def _abort_llm(self, request_id: str) -> None:
        """Ask the LLM to end request ``request_id`` early (the client cancelled; watcher thread).

        The LLM then ends its stream with a CANCELLED error, which the worker passes on.
        """
        if request_id not in self.llm_streams:
            return  # finished meanwhile
        responses = self.llm_streams[request_id]  # None until exec() returned, with the first response
        if hasattr(responses, "cancel"):  # Triton ≥ 24.11
            responses.cancel()
        else:
            try:
                self.aborts.post(request_id)
            except OSError as exc:  # the stream then runs to its end, drained by the worker
                pb_utils.Logger.log_warn(f"{self.name}: cannot abort LLM request {request_id}: {exc}")

    def _cancel(self, responses, request_id: str) -> None:
        """Cancel the LLM request and drain its responses (abandoning a BLS stream crashes the server)."""
        self._abort_llm(request_id)
        for _ in responses:
            pass

    def _generate(self, req, prompt: str, sender, extras: list[str], load) -> None:
        request_id = uuid.uuid4().hex
        flags = [pb_utils.Tensor(f"return_{name}", np.array([True], dtype=np.bool_)) for name in extras]
        llm_request = pb_utils.InferenceRequest(
            model_name=self.llm_model,
            inputs=[
                pb_utils.Tensor("text_input", np.array([prompt.encode("utf-8")], dtype=np.object_)),
                pb_utils.Tensor("stream", np.array([req.stream], dtype=np.bool_)),
                pb_utils.Tensor("sampling_parameters", np.array([llm_sampling_json(req).encode()], dtype=np.object_)),
                pb_utils.Tensor("exclude_input_in_output", np.array([True], dtype=np.bool_)),
                *flags,
            ],
            requested_output_names=["text_output", *extras],
            parameters={ID_PARAMETER: request_id},
        )
        pending = LLMExtras(extras)
        censor = self.guard.stream() if self.censor_output else None
        collected: list[str] = []
        reported = 0
        guard_s = 0.0
        # exec() returns with the LLM's first response, which for a non-streaming request is its
        # last: watch from before it, so that cancelling can abort a long non-streaming answer.
        self.llm_streams[request_id] = None
        self.watcher.watch(request_id, sender.is_cancelled)
        try:
            responses = llm_request.exec(decoupled=True)
        except BaseException:
            self.watcher.unwatch(request_id)
            self.llm_streams.pop(request_id, None)
            raise
        self.llm_streams[request_id] = responses
        failure = None  # (message, code) of the LLM's error response, the stream's last
        try:
            for response in responses:
                load.first_token()
                if response.has_error():
                    code = response.error().code()
                    if code == pb_utils.TritonError.CANCELLED or response.error().message() == CANCELLED_MESSAGE:
                        failure = (CANCELLED_MESSAGE, pb_utils.TritonError.CANCELLED)
                        break
                    message = f"{self.llm_model}: {response.error().message()}"
                    if code != pb_utils.TritonError.INVALID_ARG:
                        pb_utils.Logger.log_error(f"{self.name}: {message}")  # e.g. a dead stub, for `kit status`
                    self.metrics.add("errors")
                    failure = (message, None)
                    break
                out = pb_utils.get_output_tensor_by_name(response, "text_output")
                if out is None:
                    continue  # the empty final response of a decoupled stream
                pending.add(response)
                delta = b"".join(out.as_numpy().reshape(-1)).decode("utf-8", errors="replace")
                if censor is not None:
                    started = time.perf_counter()
                    delta = censor.feed(delta)
                    guard_s += time.perf_counter() - started
                if not req.stream:
                    collected.append(delta)
                elif delta:
                    count = censor.censored - reported if censor else 0
                    reported += count
                    sender.send(self._respond(delta, False, count, pending.take()))
        except BaseException:
            self._cancel(responses, request_id)
            raise
        finally:  # unwatched before any final send (see CancelWatcher)
            self.watcher.unwatch(request_id)
            self.llm_streams.pop(request_id, None)
            self.keeper.keep(responses)
            self.metrics.add("guard_us", guard_s * 1e6)
        if failure is not None:
            tensors.send_error(sender, *failure)
            return
        tail = censor.close() if censor else ""
        total = censor.censored if censor else 0
        self.metrics.add("censored", total)
        for category, count in (censor.counts if censor else {}).items():
            self.metrics.add(("output", category), count)
        if req.stream:
            sender.send(self._respond(tail, False, total - reported, pending.take(final=True)), flags=tensors.FINAL)
        else:
            sender.send(self._respond("".join(collected) + tail, False, total, pending.take(final=True)),
                        flags=tensors.FINAL)

    def finalize(self):
        self.watcher.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()
        self.load.close()
        self.keeper.clear()


TritonPythonModel.__doc__ = "The guarded pipeline's Triton model.\n\n" + contract.PIPELINE.doc()
