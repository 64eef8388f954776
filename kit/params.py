"""Parameter files (YAML) shared by the CLI and the notebooks.

One flat mapping serves both: papermill injects it into every notebook's
``parameters`` cell, and :func:`deployment` picks the keys that describe the
model repository. Example: ``params/gpu.yaml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from kit.config import DeploymentConfig, GuardConfig
from kit.exceptions import ConfigError

PROFILES = ("cpu", "gpu")


def load(path: Path | str | None) -> dict[str, Any]:
    """The mapping in a YAML file (empty for None)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file {path} does not exist")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameters file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"parameters file {path} must hold a mapping of name: value")
    return data


def deployment(params: Mapping[str, Any]) -> DeploymentConfig:
    """A :class:`DeploymentConfig` from flat parameters.

    ``profile`` picks the preset (``cpu``: the tiny local model; ``gpu``:
    Llama-3-8B-Instruct); ``model``, ``engine_args`` (merged over the preset's),
    the instance counts, ``bls_mode``, ``blocking_variant``, parallelism and
    the guard's ``policy``/``actions``/``extra_words``/``allow_words``/``block_input``/``censor_output``
    override it. Other keys (notebook-only parameters) are ignored.
    """
    profile = params.get("profile", "cpu")
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES}, got {profile!r}")
    base = DeploymentConfig.cpu_default() if profile == "cpu" else DeploymentConfig.gpu_default()
    changes: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(DeploymentConfig)} - {"guard", "engine_args"}
    for key in fields:
        if params.get(key) not in (None, ""):
            changes[key] = params[key]
    if changes.get("model") and Path(changes["model"]).is_dir():
        # model.json is read by a process with another working directory: make local paths absolute
        changes["model"] = str(Path(changes["model"]).resolve())
    if params.get("engine_args"):
        if not isinstance(params["engine_args"], Mapping):
            raise ConfigError("engine_args must be a mapping of vLLM engine argument: value")
        changes["engine_args"] = {**base.engine_args, **params["engine_args"]}
    guard_changes = {
        f.name: params[f.name] for f in dataclasses.fields(GuardConfig) if params.get(f.name) not in (None, "")
    }
    if guard_changes:
        changes["guard"] = dataclasses.replace(base.guard, **guard_changes)
    return dataclasses.replace(base, **changes)
