"""The kit's vLLM backend: a decoupled Triton Python model over vLLM's ``AsyncLLM``.

It follows the public contract of NVIDIA's vLLM backend, so one model
repository (``config.pbtxt`` with ``backend: "vllm"`` and engine arguments in
``1/model.json``) serves on NVIDIA's image and on the pip-installed server:

* inputs ``text_input`` (required), ``stream``, ``sampling_parameters`` (JSON),
  ``exclude_input_in_output``, ``return_finish_reason``, ``return_num_output_tokens``;
* outputs ``text_output`` (+ ``finish_reason``, ``num_output_tokens`` when asked);
* one engine per model instance, running on an asyncio loop in a background
  thread: ``execute`` only validates and schedules, so any number of requests
  are in flight at once and vLLM batches them continuously;
* the loop never sends: outputs go to a :class:`~kit.triton_models.responses.ResponsePump`
  whose sender threads make the blocking round trips to the server and coalesce the
  outputs that pile up meanwhile (see that module for the H200 profile behind this);
* a :class:`~kit.triton_models.responses.CancelWatcher` aborts the vLLM request of a
  cancelled client request, streaming or not; a bad request gets an ``INVALID_ARG`` error
  and the model keeps serving;
* with ``REPORT_CUSTOM_METRICS`` the engine's statistics appear on Triton's
  metrics port.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from kit import sampling
from kit.exceptions import RequestError
from kit.triton_models import tensors
from kit.triton_models.engine_metrics import EngineMetrics
from kit.triton_models.responses import CancelWatcher, ResponsePump


ID_PARAMETER = "kit_request_id"
ABORT_PARAMETER = "kit_abort"
# vLLM's output handler works through one engine step's outputs in chunks of this many running
# requests and yields to the event loop between chunks. At the default (128) an H200 serving 256
# streams sent ~250 one-token responses per 300-token request instead of ~60, and output fell to
# a third; at 512 it ran at 21.9k tok/s. A value above any usual ``max_num_seqs`` keeps one step's
# outputs together. The server's environment wins where it sets the variable.
OUTPUT_PROC_CHUNK_SIZE = "1024"
# Sender threads per model instance (see kit.triton_models.responses); KIT_RESPONSE_SENDERS overrides.
RESPONSE_SENDERS = 2


def _request_parameters(request) -> dict:
    try:
        value = json.loads(request.parameters() or "{}")
    except (ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class Job:
    """One request on its way through the engine (read by the loop and by the sender threads)."""

    request_id: str
    prompt: str
    stream: bool
    prepend_prompt: bool  # NVIDIA's contract: without streaming the prompt is prepended unless excluded
    params: dict
    finish_reason: bool
    num_output_tokens: bool
    sender: Any = None
    task: Any = None  # its asyncio task, once running (read and written on the loop only)
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """The last item of a job that ends with an error instead of an output."""

    message: str
    code: Any = None  # a pb_utils.TritonError code; None → INVALID_ARG


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(self.model_config):
            raise pb_utils.TritonModelException(
                "the vllm backend needs `model_transaction_policy { decoupled: true }` in config.pbtxt"
            )
        self.logger = pb_utils.Logger
        model_json = Path(args["model_repository"]) / args["model_version"] / "model.json"
        engine_json = json.loads(model_json.read_text())
        report_flag = tensors.config_parameters(self.model_config).get("REPORT_CUSTOM_METRICS", "")
        report = report_flag.lower() in ("true", "1", "yes")
        if report:
            engine_json["disable_log_stats"] = False
        self.metrics = EngineMetrics({"model": args["model_name"], "version": args["model_version"]}) if report else None

        self._pin_device(args)
        os.environ.setdefault("VLLM_V1_OUTPUT_PROC_CHUNK_SIZE", OUTPUT_PROC_CHUNK_SIZE)
        self.jobs: dict[str, Job] = {}
        senders = int(os.environ.get("KIT_RESPONSE_SENDERS", RESPONSE_SENDERS))
        self.pump = ResponsePump(self._send, senders=senders, name="vllm-send", on_error=self._send_failed)
        self.watcher = CancelWatcher(self._cancel, name="vllm-cancel-watch")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop", daemon=True)
        self.thread.start()
        self.engine = asyncio.run_coroutine_threadsafe(self._create_engine(engine_json), self.loop).result()
        self.max_context = self.engine.model_config.max_model_len
        self.logger.log_info(
            f"vLLM engine ready for {engine_json.get('model')} (context {self.max_context}, "
            f"{senders} response senders)"
        )

    def _pin_device(self, args) -> None:
        """With ``KIND_GPU`` instances (replicas), each instance's engine sees only its own GPU.

        Tensor/pipeline parallelism uses ``KIND_MODEL`` (the builder refuses to mix the two), so
        the engine then places its workers itself.
        """
        if args.get("model_instance_kind") == "GPU":
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args["model_instance_device_id"])

    async def _create_engine(self, engine_json: dict):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            engine_args = AsyncEngineArgs(**engine_json)
        except TypeError as exc:
            raise pb_utils.TritonModelException(f"model.json has an invalid engine argument: {exc}") from None
        loggers = [self.metrics.logger_factory()] if self.metrics else None
        return AsyncLLM.from_engine_args(engine_args, stat_loggers=loggers)

    # ------------------------------------------------------------------ requests
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            control = _request_parameters(request)
            if ABORT_PARAMETER in control:
                # A BLS caller cancelling one of its requests (Triton 2.51's BLS
                # response iterators have no cancel()): cancel it, then answer.
                self._cancel(str(control[ABORT_PARAMETER]))
                sender.send(flags=tensors.FINAL)
                continue
            try:
                job = self._parse(request)
            except RequestError as exc:
                tensors.send_error(sender, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - never let one request kill the stub
                tensors.send_error(sender, f"could not read the request: {exc}")
                continue
            job.request_id = str(control.get(ID_PARAMETER) or uuid.uuid4().hex)
            job.sender = sender
            self.jobs[job.request_id] = job
            self.watcher.watch(job.request_id, sender.is_cancelled)
            asyncio.run_coroutine_threadsafe(self._generate(job), self.loop)
        return None

    def _cancel(self, request_id: str) -> None:
        """Cancel a job from any thread: vLLM aborts the request, the client gets a CANCELLED error."""
        self.loop.call_soon_threadsafe(self._cancel_on_loop, request_id)

    def _cancel_on_loop(self, request_id: str) -> None:
        job = self.jobs.get(request_id)
        if job is None:
            return
        job.cancelled = True  # a task not yet started sees this at its start
        if job.task is not None:
            job.task.cancel()

    def _parse(self, request) -> Job:
        prompt = tensors.text(request, "text_input")
        stream = tensors.flag(request, "stream")
        exclude = tensors.optional(request, "exclude_input_in_output")
        if stream and exclude is not None and not bool(exclude):
            raise RequestError("streaming returns only new text: drop exclude_input_in_output or set it true")
        params = sampling.parse(tensors.optional(request, "sampling_parameters"), max_context=self.max_context)
        return Job(
            request_id="",
            prompt=prompt,
            stream=stream,
            prepend_prompt=not stream and not (exclude is not None and bool(exclude)),
            params=params,
            finish_reason=tensors.flag(request, "return_finish_reason"),
            num_output_tokens=tensors.flag(request, "return_num_output_tokens"),
        )

    async def _generate(self, job: Job) -> None:
        """Run one job on the engine; every path ends with a final item for the pump."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        final: Any = None  # the empty final item, unless an output or a failure ends the job
        try:
            job.task = asyncio.current_task()
            if job.cancelled:
                raise asyncio.CancelledError
            kind = RequestOutputKind.DELTA if job.stream else RequestOutputKind.FINAL_ONLY
            try:
                params = SamplingParams(**job.params, output_kind=kind)
            except (ValueError, TypeError) as exc:
                raise RequestError(f"invalid sampling parameters: {exc}") from None
            async for output in self.engine.generate(job.prompt, params, job.request_id):
                if output.finished:  # the generator's last output
                    final = output
                elif job.stream:
                    self.pump.put(job.request_id, output)
        except asyncio.CancelledError:  # the watcher or a BLS abort; vLLM aborted the request
            final = Failure("request cancelled", pb_utils.TritonError.CANCELLED)
        except RequestError as exc:
            final = Failure(str(exc))
        except ValueError as exc:  # vLLM's own input validation (prompt too long, ...)
            final = Failure(f"vLLM rejected the request: {exc}")
        except Exception as exc:  # noqa: BLE001
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

        Streaming outputs are deltas: texts are joined and token counts added per sequence index.
        """
        texts: dict[int, str] = {}
        counts: dict[int, int] = {}
        reasons: dict[int, str] = {}
        for output in outputs:
            for seq in output.outputs:
                texts[seq.index] = texts.get(seq.index, "") + seq.text
                counts[seq.index] = counts.get(seq.index, 0) + len(seq.token_ids)
                reasons[seq.index] = str(seq.finish_reason)
        order = sorted(texts)
        values = [texts[i] for i in order]
        if job.prepend_prompt:
            values = [job.prompt + t for t in values]
        out = [tensors.bytes_tensor("text_output", values)]
        if job.finish_reason:
            out.append(tensors.bytes_tensor("finish_reason", [reasons[i] for i in order]))
        if job.num_output_tokens:
            out.append(pb_utils.Tensor("num_output_tokens", np.array([counts[i] for i in order], dtype=np.uint32)))
        return pb_utils.InferenceResponse(output_tensors=out)

    def finalize(self):
        self.logger.log_info("shutting down the vLLM engine")
        self.watcher.close()
        try:
            self.engine.shutdown()
        finally:
            self.pump.close()
            if self.metrics is not None:
                self.metrics.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
