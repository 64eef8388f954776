"""The kit's vLLM backend: a decoupled Triton Python model over vLLM's ``AsyncLLM``.

It follows the public contract of NVIDIA's vLLM backend, so one model
repository (``config.pbtxt`` with ``backend: "vllm"`` and engine arguments in
``1/model.json``) serves on NVIDIA's image and on the pip-installed server:

* inputs and outputs as :data:`kit.contract.LLM` declares them (listed in
  :class:`TritonPythonModel`'s docstring); ``auto_complete_config`` fills in
  whatever ``config.pbtxt`` leaves out, so NVIDIA's two-line sample
  (``backend: "vllm"`` + ``instance_group``) loads;
* every response carries all ``n`` sequences in order (NVIDIA's positional contract,
  :mod:`kit.triton_models.sequences`);
* multi-LoRA (``enable_lora`` in model.json + ``1/multi_lora.json``; ``lora_name`` in the
  sampling parameters) and ``ENABLE_VLLM_HEALTH_CHECK`` as in NVIDIA's backend;
* one engine per model instance, running on an asyncio loop in a background
  thread: ``execute`` only queues the requests Triton hands it (one per call under
  load) and wakes the loop once per wave; the loop reads them and starts one task
  each, so any number of requests are in flight at once and vLLM batches them
  continuously (on the H200 this took the stub's Python time per ``execute`` from
  0.21 to 0.04 ms: ``benchmarks/results/h200/admission/``);
* the loop sends only immediate answers (a bad request's error, an abort's
  acknowledgement): outputs go to a :class:`~kit.triton_models.responses.ResponsePump`
  whose sender threads make the blocking round trips to the server and coalesce the
  outputs that pile up meanwhile (see that module for the H200 profile behind this);
* a :class:`~kit.triton_models.responses.CancelWatcher` aborts the vLLM request of a
  cancelled client request, streaming or not; the guarded pipeline aborts its LLM requests
  through an :class:`~kit.aborts.AbortMailbox` the engine loop reads, other
  callers with a ``kit_abort`` request; a bad request gets an ``INVALID_ARG`` error and the
  model keeps serving;
* with ``REPORT_CUSTOM_METRICS`` the engine's statistics appear on Triton's
  metrics port (:mod:`kit.triton_models.engine_metrics`);
* unloading waits for the requests in flight.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from kit import aborts, contract, sampling
from kit.contract import ABORT_PARAMETER, CANCELLED_MESSAGE, ID_PARAMETER
from kit.exceptions import RequestError
from kit.triton_models import tensors
from kit.triton_models.engine_metrics import EngineMetrics
from kit.triton_models.responses import CancelWatcher, ResponsePump
from kit.triton_models.sequences import Sequences

# An abort can overtake the request it names: the pipeline's watcher and its worker reach the
# server on threads of their own. Such an abort is kept this long, for the request to meet it.
EARLY_ABORT_S = aborts.KEEP_S
# Optional outputs, each sent only when the request's input `return_<name>` is true.
EXTRA_OUTPUTS = ("finish_reason", "cumulative_logprob", "logprobs", "num_input_tokens", "num_output_tokens")
# vLLM's output handler works through one engine step's outputs in chunks of this many running
# requests and yields to the event loop between chunks. At the default (128) an H200 serving 256
# streams sent ~250 one-token responses per 300-token request instead of ~60, and output fell to
# a third; at 512 it ran at 21.9k tok/s. A value above any usual ``max_num_seqs`` keeps one step's
# outputs together. The server's environment wins where it sets the variable.
OUTPUT_PROC_CHUNK_SIZE = "1024"
# Sender threads per model instance (see kit.triton_models.responses); KIT_RESPONSE_SENDERS overrides.
RESPONSE_SENDERS = 2


def _truthy(value) -> bool:
    """model.json and config parameters say true as a bool or as text (NVIDIA's backend reads both)."""
    return str(value).strip().lower() == "true"


def read_loras(engine_json: dict, version_dir: Path) -> dict[str, str]:
    """Adapter name → folder from ``multi_lora.json`` when model.json says ``enable_lora``; else empty.

    NVIDIA's layout: ``1/multi_lora.json`` maps each name to an adapter folder (PEFT layout);
    relative folders are taken from the version folder.
    """
    if not _truthy(engine_json.get("enable_lora", False)):
        return {}
    path = version_dir / "multi_lora.json"
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise pb_utils.TritonModelException(
            f"model.json enables LoRA but {path} is missing; add it: {{\"<adapter name>\": \"<adapter folder>\"}}"
        ) from None
    except ValueError as exc:
        raise pb_utils.TritonModelException(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise pb_utils.TritonModelException(f"{path} must map adapter names to folders (strings)")
    return {name: str((version_dir / folder).resolve()) for name, folder in table.items()}


def _request_parameters(request) -> dict:
    try:
        value = json.loads(request.parameters() or "{}")
    except (ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class Job:
    """One request on its way through the engine (read by the loop and by the sender threads).

    ``request_id`` is the backend's own (unique; the engine's request id); ``name`` the caller's
    ``kit_request_id``, which aborts name and which two callers could share.
    """

    request_id: str
    prompt: str
    stream: bool
    prepend_prompt: bool  # NVIDIA's contract: without streaming the prompt is prepended unless excluded
    params: dict
    extras: set  # the optional outputs asked for (EXTRA_OUTPUTS)
    lora: Any = None  # vLLM's LoRARequest, or None for the base model
    sequences: Any = None  # its Sequences, once the engine has it (merged by the sender threads)
    sender: Any = None
    task: Any = None  # its asyncio task, once running (read and written on the loop only)
    cancelled: bool = False
    name: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """The last item of a job that ends with an error instead of an output."""

    message: str
    code: Any = None  # a pb_utils.TritonError code; None → INVALID_ARG


def _cache_environment(envs) -> bool:
    """Freeze vLLM's environment variables in this process once its engine is up; say whether it could.

    ``envs`` is the ``vllm.envs`` module, whose attributes call ``os.getenv`` on every read, and
    vLLM reads some of them per output: with the engine's statistics on, 21 % of the vLLM stub's
    GIL-held time went to those reads on an H200 at 256 streams (py-spy ``--gil``,
    ``benchmarks/results/h200/statistics/``). vLLM freezes them itself in its engine processes
    after start-up (``enable_envs_cache``); the stub is the engine's front-end process, so it
    does the same. Variables the backend sets (``VLLM_V1_OUTPUT_PROC_CHUNK_SIZE``) are set before.
    """
    enable = getattr(envs, "enable_envs_cache", None)
    if enable is None:
        return False
    enable()
    return True


def _rejection_errors(errors) -> tuple[type[Exception], ...]:
    """The exception classes vLLM raises for a request it refuses, none of which is a crash.

    ``errors`` is the ``vllm.exceptions`` module. ``ValueError``, plus vLLM's own validation
    class, which is not a ``ValueError``: ``VLLMClientError`` in recent releases,
    ``VLLMValidationError`` in 0.24 (the CUDA build the GPU hosts run). Naming only one of them
    broke every request on the other.
    """
    names = ("VLLMClientError", "VLLMValidationError")
    return (ValueError, *(getattr(errors, n) for n in names if hasattr(errors, n)))


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        """Fill in the contract's tensors, the decoupled policy and ``max_batch_size: 0`` (vLLM batches)."""
        contract.LLM.complete(auto_complete_model_config)
        auto_complete_model_config.set_model_transaction_policy({"decoupled": True})
        auto_complete_model_config.set_max_batch_size(0)
        return auto_complete_model_config

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(self.model_config):
            raise pb_utils.TritonModelException(
                "the vllm backend needs `model_transaction_policy { decoupled: true }` in config.pbtxt"
            )
        self.logger = pb_utils.Logger
        model_json = Path(args["model_repository"]) / args["model_version"] / "model.json"
        engine_json = json.loads(model_json.read_text())
        # NVIDIA's rule: engine metrics need REPORT_CUSTOM_METRICS and vLLM's statistics (which
        # `disable_log_stats: true` in model.json turns off).
        self.report_metrics = self._config_flag("REPORT_CUSTOM_METRICS") and not _truthy(
            engine_json.get("disable_log_stats", False)
        )
        self.labels = {"model": args["model_name"], "version": args["model_version"]}
        self.metrics = None
        self.loras = read_loras(engine_json, model_json.parent)
        self.health_check = self._config_flag("ENABLE_VLLM_HEALTH_CHECK")
        self.healthy = True

        self._pin_device(args)
        os.environ.setdefault("VLLM_V1_OUTPUT_PROC_CHUNK_SIZE", OUTPUT_PROC_CHUNK_SIZE)
        self.jobs: dict[str, Job] = {}
        self.inbox: collections.deque = collections.deque()
        self.admitting = False
        self.early_aborts: dict[str, float] = {}  # request name → monotonic time (read and written on the loop)
        self.mailbox = aborts.AbortMailbox(aborts.folder(args["model_name"]))
        self.mailbox_error = ""  # the last error reading it, logged once
        self.closing = False
        senders = int(os.environ.get("KIT_RESPONSE_SENDERS", RESPONSE_SENDERS))
        self.pump = ResponsePump(self._send, senders=senders, name="vllm-send", on_error=self._send_failed)
        self.watcher = CancelWatcher(self._cancel, name="vllm-cancel-watch", log=self.logger.log_warn)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop", daemon=True)
        self.thread.start()
        self.engine = asyncio.run_coroutine_threadsafe(self._create_engine(engine_json), self.loop).result()
        self.loop.call_soon_threadsafe(self._read_mailbox)
        self.max_context = self.engine.model_config.max_model_len
        self.rejected = _rejection_errors(importlib.import_module("vllm.exceptions"))
        if not _cache_environment(importlib.import_module("vllm.envs")):
            self.logger.log_info("this vLLM cannot freeze its environment variables: it reads them per output")
        self.logger.log_info(
            f"vLLM engine ready for {engine_json.get('model')} (context {self.max_context}, "
            f"{senders} response senders)"
        )

    def _config_flag(self, name: str) -> bool:
        return _truthy(tensors.config_parameters(self.model_config).get(name, ""))

    def _pin_device(self, args) -> None:
        """With ``KIND_GPU`` instances (replicas), each instance's engine sees only its own GPU.

        Tensor/pipeline parallelism uses ``KIND_MODEL`` (the builder refuses to mix the two), so
        the engine then places its workers itself.
        """
        if args.get("model_instance_kind") == "GPU":
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args["model_instance_device_id"])

    async def _create_engine(self, engine_json: dict):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            engine_args = AsyncEngineArgs(**engine_json)
        except TypeError as exc:
            raise pb_utils.TritonModelException(f"model.json has an invalid engine argument: {exc}") from None
        if not self.report_metrics:
            return AsyncLLM.from_engine_args(engine_args)
        # The token-count histograms' buckets reach the context length, known once vLLM resolved its config.
        vllm_config = engine_args.create_engine_config(UsageContext.ENGINE_CONTEXT)
        try:
            self.metrics = EngineMetrics(self.labels, vllm_config.model_config.max_model_len)
        except pb_utils.TritonModelException as exc:
            if "metrics not supported" not in str(exc):
                raise
            self.logger.log_info("the server runs with --allow-metrics=false: no engine metrics")
            return AsyncLLM.from_vllm_config(vllm_config)
        return AsyncLLM.from_vllm_config(
            vllm_config, stat_loggers=[self.metrics.logger_factory()],
            enable_log_requests=engine_args.enable_log_requests,
        )

    # ------------------------------------------------------------------ requests
    def execute(self, requests):
        if self.metrics is not None and self.metrics.thread is None:
            self.metrics.start()  # only now: the model is loaded (see EngineMetrics.start)
        if self.health_check and not self._check_health():
            for request in requests:
                tensors.send_error(request.get_response_sender(), "Model is unavailable due to unhealthy vLLM engine",
                                   pb_utils.TritonError.UNAVAILABLE)
            return None
        self.inbox.extend(requests)
        if not self.admitting:
            self.admitting = True
            self.loop.call_soon_threadsafe(self._admit_arrivals)
        return None

    def _admit_arrivals(self) -> None:
        """On the loop: start every request that has arrived since the last call."""
        self.admitting = False
        while self.inbox:
            try:
                job = self._admit(self.inbox.popleft())
            except Exception as exc:  # noqa: BLE001 - e.g. an answer that could not be sent: the next ones still start
                self.logger.log_error(f"could not admit a request: {exc!r}")
                continue
            if job is not None:
                self.loop.create_task(self._generate(job))

    def _admit(self, request) -> Job | None:
        """Read one request; answer it at once (an abort, a bad request) or return its job to start."""
        sender = request.get_response_sender()
        control = _request_parameters(request)
        if ABORT_PARAMETER in control:
            # A caller cancelling the requests it named (kit_request_id): cancel them, then answer.
            self._abort(str(control[ABORT_PARAMETER]))  # already on the loop
            sender.send(flags=tensors.FINAL)
            return None
        try:
            job = self._parse(request)
        except RequestError as exc:
            tensors.send_error(sender, str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - never let one request kill the stub
            tensors.send_error(sender, f"could not read the request: {exc}")
            return None
        job.request_id = uuid.uuid4().hex
        job.name = str(control.get(ID_PARAMETER) or "")
        job.sender = sender
        self.jobs[job.request_id] = job
        self.watcher.watch(job.request_id, sender.is_cancelled)
        return job

    def _check_health(self) -> bool:
        """``ENABLE_VLLM_HEALTH_CHECK``: ask the engine before each batch; once it fails, unload the model."""
        if self.healthy:
            try:
                asyncio.run_coroutine_threadsafe(self.engine.check_health(), self.loop).result()
            except Exception as exc:  # noqa: BLE001 - any failure means the engine cannot serve
                self.healthy = False
                self.logger.log_error(f"the vLLM engine is not healthy ({exc!r}); unloading {self.labels['model']}")
                pb_utils.unload_model(self.labels["model"])  # returns at once; Triton unloads after this call
        return self.healthy

    def _cancel(self, request_id: str) -> None:
        """The watcher saw job ``request_id``'s client cancel (watcher thread): cancel it on the loop."""
        self.loop.call_soon_threadsafe(self._cancel_on_loop, request_id)

    def _cancel_on_loop(self, request_id: str) -> None:
        job = self.jobs.get(request_id)
        if job is not None:
            self._cancel_job(job)

    def _abort(self, name: str) -> bool:
        """On the loop: cancel the jobs named ``name``; returns whether there were any.

        An abort that names no job is kept :data:`EARLY_ABORT_S` seconds: its request may not
        have arrived yet (or finished already, and the abort is simply forgotten later). An empty
        name names nothing (it would otherwise match every request sent without an id).
        """
        if not name:
            return False
        jobs = [job for job in list(self.jobs.values()) if job.name == name]  # list(): senders pop meanwhile
        for job in jobs:
            self._cancel_job(job)
        if not jobs:
            now = time.monotonic()
            aborts.expire(self.early_aborts, now, EARLY_ABORT_S)
            self.early_aborts[name] = now
        return bool(jobs)

    def _read_mailbox(self) -> None:
        """On the loop, every ``aborts.POLL_S``: carry out the pipeline's aborts (see :mod:`kit.aborts`)."""
        try:
            for name in self.mailbox.read():
                if self._abort(name):
                    self.mailbox.remove(name)
            self.mailbox_error = ""
        except Exception as exc:  # noqa: BLE001 - e.g. the folder unreadable: keep serving, keep trying
            if repr(exc) != self.mailbox_error:  # once, not every POLL_S
                self.mailbox_error = repr(exc)
                self.logger.log_error(f"could not read the abort folder {self.mailbox.path}: {exc!r}")
        if not self.closing:
            self.loop.call_later(aborts.POLL_S, self._read_mailbox)

    def _cancel_job(self, job: Job) -> None:
        """vLLM aborts the job's request; its client gets a CANCELLED error."""
        job.cancelled = True  # a task not yet started sees this at its start
        # The two log lines NVIDIA's backend writes (its cancellation test looks for them).
        self.logger.log_info("[vllm] Cancelling the request")
        if job.task is not None:
            job.task.cancel()

    def _parse(self, request) -> Job:
        prompt = tensors.text(request, "text_input")
        stream = tensors.flag(request, "stream")
        exclude = tensors.optional(request, "exclude_input_in_output")
        if stream and exclude is not None and not bool(exclude):
            # NVIDIA's text, which its clients compare verbatim: streaming returns only new text
            raise RequestError(
                "Error generating stream: When streaming, `exclude_input_in_output` = False is not allowed."
            )
        params = self._sampling(request)
        lora_name = params.pop("lora_name", None)
        return Job(
            request_id="",
            prompt=prompt,
            stream=stream,
            prepend_prompt=not stream and not (exclude is not None and bool(exclude)),
            params=params,
            extras={name for name in EXTRA_OUTPUTS if tensors.flag(request, f"return_{name}")},
            lora=self._lora_request(lora_name) if lora_name is not None else None,
        )

    def _lora_request(self, name: str):
        """vLLM's ``LoRARequest`` for adapter ``name`` of ``1/multi_lora.json`` (NVIDIA's error texts)."""
        from vllm.lora.request import LoRARequest

        if not self.loras:
            raise RequestError("LoRA feature is not enabled.")
        if name not in self.loras:
            raise RequestError(f"LoRA {name} is not supported, we currently support {list(self.loras)}")
        return LoRARequest(name, list(self.loras).index(name) + 1, self.loras[name])

    def _sampling(self, request) -> dict:
        """``sampling_parameters``, or the request's parameters when that tensor is absent (NVIDIA's contract)."""
        raw = tensors.optional(request, "sampling_parameters")
        if raw is not None:
            return sampling.parse(raw, max_context=self.max_context)
        params = {
            k: v for k, v in _request_parameters(request).items()
            if k not in (ID_PARAMETER, ABORT_PARAMETER) and not k.startswith("triton_")
        }
        return sampling.check(params, max_context=self.max_context)

    async def _generate(self, job: Job) -> None:
        """Run one job on the engine; every path ends with a final item for the pump."""
        final: Any = None  # the empty final item, unless an output or a failure ends the job
        try:
            from vllm.sampling_params import RequestOutputKind

            job.task = asyncio.current_task()
            if job.name and self.early_aborts.pop(job.name, None) is not None:
                self.logger.log_info("[vllm] Cancelling the request")
                job.cancelled = True
            if job.cancelled:
                raise asyncio.CancelledError
            kind = RequestOutputKind.DELTA if job.stream else RequestOutputKind.FINAL_ONLY
            params = sampling.to_vllm(job.params, output_kind=kind)
            job.sequences = Sequences(params.n, logprobs=params.logprobs is not None)
            async for output in self.engine.generate(job.prompt, params, job.request_id, lora_request=job.lora):
                if output.finished:  # the generator's last output
                    final = output
                elif job.stream:
                    self.pump.put(job.request_id, output)
        except asyncio.CancelledError:  # the watcher or an abort; vLLM aborted the request
            self.logger.log_info("[vllm] Successfully cancelled the request")
            final = Failure(CANCELLED_MESSAGE, pb_utils.TritonError.CANCELLED)
        except RequestError as exc:
            final = Failure(str(exc))
        except self.rejected as exc:  # vLLM's own input validation (prompt too long, ...)
            final = Failure(f"vLLM rejected the request: {exc}")
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc.__cause__, self.rejected):
                # AsyncLLM wraps a ValueError of its input checks in an EngineGenerateError
                final = Failure(f"vLLM rejected the request: {exc.__cause__}")
            else:
                self.logger.log_error(f"request {job.request_id} failed: {exc!r}")
                final = Failure(f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)
        finally:
            self.watcher.unwatch(job.request_id)
            self.pump.put(job.request_id, final, final=True)

    # ------------------------------------------------------------------ responses (sender threads)
    def _send(self, request_id: str, items: list, final: bool) -> None:
        """Send everything pending for one job as one response (ResponsePump callback)."""
        job = self.jobs.get(request_id)
        if job is None:
            return
        try:
            failure = next((i for i in items if isinstance(i, Failure)), None)
            outputs = [i for i in items if i is not None and not isinstance(i, Failure)]
            flags = tensors.FINAL if final else 0
            if failure is not None:
                tensors.send_error(job.sender, failure.message, failure.code)
            elif outputs:
                job.sender.send(self._response(job, outputs), flags=flags)
            elif final:
                job.sender.send(flags=tensors.FINAL)
        finally:
            if final:
                self.jobs.pop(request_id, None)

    def _send_failed(self, request_id: str, exc: BaseException) -> None:
        self.logger.log_error(f"request {request_id}: could not send a response: {exc!r}")

    def _response(self, job: Job, outputs: list):
        """One response for the vLLM outputs of ``job`` pending since its last response.

        All ``n`` sequences, in order: texts joined, token counts added and logprobs joined per
        sequence, the latest finish reason (:class:`~kit.triton_models.sequences.Sequences`).
        """
        merged = job.sequences.merge(outputs)
        texts = [job.prompt + t for t in merged.texts] if job.prepend_prompt else merged.texts
        out = [tensors.bytes_tensor("text_output", texts)]
        extras = job.extras
        if "finish_reason" in extras:
            out.append(tensors.bytes_tensor("finish_reason", merged.finish_reasons))
        if "cumulative_logprob" in extras:
            out.append(pb_utils.Tensor("cumulative_logprob", np.array(merged.cumulative_logprobs, dtype=np.float32)))
        if "logprobs" in extras:
            out.append(tensors.bytes_tensor("logprobs", merged.logprobs))
        if "num_input_tokens" in extras:
            out.append(pb_utils.Tensor("num_input_tokens", np.array([merged.num_input_tokens], dtype=np.uint32)))
        if "num_output_tokens" in extras:
            out.append(pb_utils.Tensor("num_output_tokens", np.array(merged.num_output_tokens, dtype=np.uint32)))
        return pb_utils.InferenceResponse(output_tensors=out)

    def finalize(self):
        # Unloading waits for the requests in flight (NVIDIA's backend does too); Triton's own
        # exit timeout bounds the wait when the server stops.
        while self.jobs or self.inbox:
            self.logger.log_info(
                f"waiting for {len(self.jobs) + len(self.inbox)} request(s) in flight before unloading"
            )
            time.sleep(1)
        self.logger.log_info("shutting down the vLLM engine")
        self.watcher.close()
        self.closing = True
        self.mailbox.close()
        try:
            self.engine.shutdown()
        finally:
            self.pump.close()
            if self.metrics is not None:
                self.metrics.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


TritonPythonModel.__doc__ = "The vLLM backend's Triton model.\n\n" + contract.LLM.doc()
