"""The kit's vLLM backend: a decoupled Triton Python model over vLLM's ``AsyncLLM``.

It follows the public contract of NVIDIA's vLLM backend, so one model
repository (``config.pbtxt`` with ``backend: "vllm"`` and engine arguments in
``1/model.json``) serves on NVIDIA's image and on the pip-installed server:

* inputs and outputs as :data:`kit.contract.LLM` declares them (listed in
  :class:`TritonPythonModel`'s docstring); ``auto_complete_config`` fills in
  whatever ``config.pbtxt`` leaves out, so NVIDIA's two-line sample
  (``backend: "vllm"`` + ``instance_group``) loads;
* one engine per model instance, running on an asyncio loop in a background
  thread: ``execute`` only validates and schedules, so any number of requests
  are in flight at once and vLLM batches them continuously;
* a cancelled request aborts its vLLM request; a bad request gets an
  ``INVALID_ARG`` error and the model keeps serving;
* with ``REPORT_CUSTOM_METRICS`` the engine's statistics appear on Triton's
  metrics port.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from kit import contract, sampling
from kit.exceptions import RequestError
from kit.triton_models import tensors
from kit.triton_models.engine_metrics import EngineMetrics
from kit.triton_models.sequences import Merged, Sequences


ID_PARAMETER = "kit_request_id"
# Optional outputs, each sent only when the request's input `return_<name>` is true.
EXTRA_OUTPUTS = ("finish_reason", "cumulative_logprob", "logprobs", "num_input_tokens", "num_output_tokens")
ABORT_PARAMETER = "kit_abort"


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
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine-loop", daemon=True)
        self.thread.start()
        self.engine = asyncio.run_coroutine_threadsafe(self._create_engine(engine_json), self.loop).result()
        self.max_context = self.engine.model_config.max_model_len
        self.in_flight: set[str] = set()
        self.logger.log_info(f"vLLM engine ready for {engine_json.get('model')} (context {self.max_context})")

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
        if self.health_check and not self._check_health():
            for request in requests:
                tensors.send_error(request.get_response_sender(), "Model is unavailable due to unhealthy vLLM engine",
                                   pb_utils.TritonError.UNAVAILABLE)
            return None
        for request in requests:
            sender = request.get_response_sender()
            control = _request_parameters(request)
            if ABORT_PARAMETER in control:
                # A BLS caller cancelling one of its requests (Triton 2.51's BLS
                # response iterators have no cancel()): abort it, then answer.
                asyncio.run_coroutine_threadsafe(self._abort(str(control[ABORT_PARAMETER]), sender), self.loop)
                continue
            try:
                job = self._parse(request)
                job["request_id"] = str(control.get(ID_PARAMETER) or uuid.uuid4().hex)
            except RequestError as exc:
                tensors.send_error(sender, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - never let one request kill the stub
                tensors.send_error(sender, f"could not read the request: {exc}")
                continue
            asyncio.run_coroutine_threadsafe(self._generate(job, sender), self.loop)
        return None

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

    async def _abort(self, request_id: str, sender) -> None:
        try:
            if request_id in self.in_flight:
                await self.engine.abort(request_id)
        finally:
            sender.send(flags=tensors.FINAL)

    def _parse(self, request) -> dict:
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
        return {
            "lora": self._lora_request(lora_name) if lora_name is not None else None,
            "prompt": prompt,
            "stream": stream,
            # NVIDIA's contract: without streaming the prompt is prepended unless excluded
            "prepend_prompt": not stream and not (exclude is not None and bool(exclude)),
            "params": params,
            # the optional outputs asked for by their `return_<name>` inputs
            "extras": {name for name in EXTRA_OUTPUTS if tensors.flag(request, f"return_{name}")},
        }

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

    def _response(self, job: dict, merged: Merged):
        """One response: ``text_output`` plus the optional outputs the request asked for (n entries each)."""
        texts = [job["prompt"] + t for t in merged.texts] if job["prepend_prompt"] else merged.texts
        out = [tensors.bytes_tensor("text_output", texts)]
        extras = job["extras"]
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

    async def _generate(self, job: dict, sender) -> None:
        from vllm.exceptions import VLLMClientError  # request errors; not ValueErrors
        from vllm.sampling_params import RequestOutputKind

        request_id = job["request_id"]
        finished = False
        cancel_check = tensors.CancelCheck()
        try:
            kind = RequestOutputKind.DELTA if job["stream"] else RequestOutputKind.FINAL_ONLY
            params = sampling.to_vllm(job["params"], output_kind=kind)
            sequences = Sequences(params.n, logprobs=params.logprobs is not None)
            self.in_flight.add(request_id)
            async for output in self.engine.generate(job["prompt"], params, request_id, lora_request=job["lora"]):
                if cancel_check.due() and sender.is_cancelled():
                    await self.engine.abort(request_id)
                    tensors.send_error(sender, "request cancelled", pb_utils.TritonError.CANCELLED)
                    finished = True
                    return
                flags = tensors.FINAL if output.finished else 0
                if job["stream"] or output.finished:
                    sender.send(self._response(job, sequences.merge([output])), flags=flags)
                finished = finished or output.finished
        except RequestError as exc:
            tensors.send_error(sender, str(exc))
            finished = True
        except (ValueError, VLLMClientError) as exc:  # vLLM's own input validation (prompt too long, ...)
            tensors.send_error(sender, f"vLLM rejected the request: {exc}")
            finished = True
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc.__cause__, (ValueError, VLLMClientError)):
                # AsyncLLM wraps a ValueError of its input checks in an EngineGenerateError
                tensors.send_error(sender, f"vLLM rejected the request: {exc.__cause__}")
                finished = True
                return
            self.logger.log_error(f"request {request_id} failed: {exc!r}")
            tensors.send_error(sender, f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)
            finished = True
        finally:
            self.in_flight.discard(request_id)
            if not finished:  # every path must end the response stream
                try:
                    await self.engine.abort(request_id)
                finally:
                    sender.send(flags=tensors.FINAL)

    def finalize(self):
        # Unloading waits for the requests in flight (NVIDIA's backend does too); Triton's own
        # exit timeout bounds the wait when the server stops.
        while self.in_flight:
            self.logger.log_info(f"waiting for {len(self.in_flight)} request(s) in flight before unloading")
            time.sleep(1)
        self.logger.log_info("shutting down the vLLM engine")
        try:
            self.engine.shutdown()
        finally:
            if self.metrics is not None:
                self.metrics.close()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


TritonPythonModel.__doc__ = "The vLLM backend's Triton model.\n\n" + contract.LLM.doc()
