"""What a deployment is: frozen dataclasses, validated before anything is written.

A :class:`DeploymentConfig` describes one model repository: the model, vLLM's
engine arguments, instance counts, the guard and the BLS mode. Notebooks and
the CLI build one (``DeploymentConfig.cpu_default()``,
``DeploymentConfig.gpu_default()``, or ``from_dict`` of a YAML parameters
file) and hand it to :func:`kit.repository.build`. Nothing here imports vLLM
or Triton unless asked to validate engine arguments against the installed vLLM.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kit.exceptions import ConfigError
from kit.weights import LLAMA3_REPO_ID, tiny_model_dir

BLS_MODES = ("async", "blocking")
DEVICES = ("gpu", "cpu")
LLM_MODEL = "llama3-8b-instruct"
POSTPROCESS_MODEL = "llama_postprocess"
PIPELINE_MODEL = "llama_bls_ensemble"
BLOCKING_MODEL = "llama_bls_blocking"

DEFAULT_REFUSAL = "Sorry, I can't help with that: the request contains language this service does not accept."

GPU_ENGINE_ARGS = {
    "dtype": "auto",
    "gpu_memory_utilization": 0.85,
    "max_model_len": 8192,
    "enforce_eager": False,
}
CPU_ENGINE_ARGS = {
    "dtype": "float32",
    "max_model_len": 2048,
    "max_num_seqs": 128,
    "seed": 0,
}


@dataclass(frozen=True)
class GuardConfig:
    """How the pipeline guards input and output (see :mod:`kit.guardrails`).

    ``policy`` names the word list and what to do per category (``default`` or
    ``better_profanity``, see :mod:`kit.guardrails.policy`); ``actions``
    overrides single categories, e.g. ``{"insult": "mask"}``.
    """

    block_input: bool = True
    censor_output: bool = True
    extra_words: tuple[str, ...] = ()
    allow_words: tuple[str, ...] = ()
    refusal: str = DEFAULT_REFUSAL
    policy: str = "default"
    actions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "extra_words", tuple(self.extra_words))
        object.__setattr__(self, "allow_words", tuple(self.allow_words))
        if isinstance(self.actions, Mapping):
            object.__setattr__(self, "actions", dict(self.actions))


@dataclass(frozen=True)
class DeploymentConfig:
    """One model repository: the model, its engine, the pipeline around it."""

    model: str = LLAMA3_REPO_ID
    """A hub id (``owner/name``) or a local model folder."""
    device: str = "gpu"
    engine_args: Mapping[str, Any] = field(default_factory=lambda: dict(GPU_ENGINE_ARGS))
    """vLLM ``AsyncEngineArgs`` besides ``model`` (written to ``1/model.json``)."""
    llm_instances: int = 1
    pipeline_instances: int = 1
    postprocess_instances: int = 1
    bls_mode: str = "async"
    """``async``: every request in flight at once; ``blocking``: one at a time, like the seed."""
    blocking_variant: bool = False
    """Also serve ``llama_bls_blocking`` (blocking mode) for side-by-side comparisons."""
    guard: GuardConfig = field(default_factory=GuardConfig)
    report_metrics: bool = True
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    replicas: int = 1
    """Independent vLLM engines, one per GPU (``KIND_GPU`` instances); needs ``device='gpu'``."""

    # ------------------------------------------------------------------ presets
    @classmethod
    def gpu_default(cls, **changes) -> "DeploymentConfig":
        """Llama-3-8B-Instruct from the hub on one GPU (the committed ``model_repository/``)."""
        return dataclasses.replace(cls(), **changes)

    @classmethod
    def cpu_default(cls, model_dir: Path | str | None = None, **changes) -> "DeploymentConfig":
        """The embedded default: the tiny local model on vLLM's CPU build."""
        base = cls(
            model=str(Path(model_dir or tiny_model_dir()).resolve()),
            device="cpu",
            engine_args=dict(CPU_ENGINE_ARGS),
            pipeline_instances=2,
            blocking_variant=True,
        )
        return dataclasses.replace(base, **changes)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for the guard's word tuples), as :meth:`from_dict` reads it."""
        data = dataclasses.asdict(self)
        data["engine_args"] = dict(self.engine_args)
        data["guard"]["extra_words"] = list(self.guard.extra_words)
        data["guard"]["allow_words"] = list(self.guard.allow_words)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeploymentConfig":
        """A config from :meth:`to_dict`'s shape; ConfigError naming unknown settings and the known ones."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown deployment setting(s) {unknown}; known: {sorted(known)}")
        guard = data.pop("guard", None) or {}
        if isinstance(guard, Mapping):
            guard_known = {f.name for f in dataclasses.fields(GuardConfig)}
            bad = sorted(set(guard) - guard_known)
            if bad:
                raise ConfigError(f"unknown guard setting(s) {bad}; known: {sorted(guard_known)}")
            guard = GuardConfig(**guard)
        return cls(guard=guard, **data)

    # ------------------------------------------------------------------ derived
    @property
    def model_is_local(self) -> bool:
        """True for a folder (absolute, relative or existing path); False for a hub id ``owner/name``."""
        path = Path(self.model)
        return path.is_absolute() or self.model.startswith(".") or path.exists() or self.model.count("/") != 1

    def model_json(self) -> dict[str, Any]:
        """The engine arguments NVIDIA's and the kit's vLLM backend read from ``1/model.json``."""
        args = {"model": self.model, **self.engine_args}
        if self.tensor_parallel_size > 1:
            args["tensor_parallel_size"] = self.tensor_parallel_size
        if self.pipeline_parallel_size > 1:
            args["pipeline_parallel_size"] = self.pipeline_parallel_size
        return args

    @property
    def gpus_needed(self) -> int:
        """GPUs the deployment occupies: tensor × pipeline parallel size × replicas (0 on the CPU)."""
        if self.device != "gpu":
            return 0
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.replicas

    # ------------------------------------------------------------------ validation
    def validate(
        self,
        *,
        check_engine_args: bool = True,
        check_model: bool = True,
        check_gpus: bool = True,
        visible_gpus: int | None = None,
    ) -> None:
        """Raise :class:`ConfigError` naming the first problem and its fix."""
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.bls_mode not in BLS_MODES:
            raise ConfigError(f"bls_mode must be one of {BLS_MODES}, got {self.bls_mode!r}")
        for name in ("llm_instances", "pipeline_instances", "postprocess_instances", "replicas",
                     "tensor_parallel_size", "pipeline_parallel_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer ≥ 1, got {value!r}")
        if not self.model or not isinstance(self.model, str):
            raise ConfigError("model must be a hub id such as meta-llama/Meta-Llama-3-8B-Instruct or a local folder")
        if check_model and self.model_is_local and not (Path(self.model) / "config.json").is_file():
            raise ConfigError(
                f"model folder {self.model} has no config.json; build the tiny model "
                "(`python -m kit build`) or download one (`python -m kit download`)"
            )
        if not isinstance(self.engine_args, Mapping):
            raise ConfigError("engine_args must be a mapping of vLLM engine argument → value")
        for key in ("model", "tensor_parallel_size", "pipeline_parallel_size"):
            if key in self.engine_args:
                raise ConfigError(f"set {key!r} as a deployment setting, not inside engine_args")
        if check_engine_args:
            unknown = sorted(set(self.engine_args) - engine_argument_names())
            if unknown:
                raise ConfigError(
                    f"unknown vLLM engine argument(s) {unknown}; see vLLM's AsyncEngineArgs for valid names"
                )
        if self.replicas > 1 and (self.tensor_parallel_size > 1 or self.pipeline_parallel_size > 1):
            raise ConfigError("use either replicas or tensor/pipeline parallelism, not both")
        if self.replicas > 1 and self.device != "gpu":
            raise ConfigError("replicas pin one engine per GPU: set device='gpu' or use llm_instances on the CPU")
        if check_gpus and self.gpus_needed > 1:
            visible = detect_gpus() if visible_gpus is None else visible_gpus
            if visible is not None and self.gpus_needed > visible:
                raise ConfigError(
                    f"this deployment needs {self.gpus_needed} GPUs but {visible} are visible; lower "
                    "tensor_parallel_size/pipeline_parallel_size/replicas or set CUDA_VISIBLE_DEVICES"
                )
        if not isinstance(self.guard, GuardConfig):
            raise ConfigError("guard must be a GuardConfig")
        from kit.guardrails.policy import resolve_actions

        resolve_actions(self.guard.policy, self.guard.actions)
        for word in (*self.guard.extra_words, *self.guard.allow_words):
            if not isinstance(word, str) or not word.strip():
                raise ConfigError(f"guard word lists may only hold non-empty strings, got {word!r}")
        if not self.guard.refusal.strip():
            raise ConfigError("guard.refusal must be a non-empty sentence")


def engine_argument_names() -> frozenset[str]:
    """Every field of the installed vLLM's ``AsyncEngineArgs`` (empty check when vLLM is absent)."""
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
    except Exception:  # noqa: BLE001 - vLLM missing or unloadable: the server will check
        return frozenset(GPU_ENGINE_ARGS) | frozenset(CPU_ENGINE_ARGS) | _COMMON_ENGINE_ARGS
    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


_COMMON_ENGINE_ARGS = frozenset({
    "load_format", "max_num_seqs", "max_num_batched_tokens", "tokenizer", "trust_remote_code",
    "enable_prefix_caching", "quantization", "kv_cache_dtype", "disable_log_stats", "enable_log_requests",
    "skip_tokenizer_init", "swap_space", "block_size", "download_dir", "revision", "served_model_name",
})


def detect_gpus() -> int | None:
    """Visible NVIDIA GPUs, or None when this machine has no NVIDIA driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
