"""Parameters (YAML): one dialect and one loader for ``params/*.yaml``, ``KIT_PARAMS`` and ``-p``.

One flat mapping serves every consumer: papermill injects it into every
notebook's ``parameters`` cell, :func:`deployment` picks the keys that describe
the model repository, and the container reads the same keys from
``KIT_PARAMS``. Example: ``params/gpu.yaml``; the guard's settings are flat
(``extra_words: [foo]``), never nested under ``guard:``.

The YAML is read with the YAML 1.2 core schema's scalars rather than PyYAML's
YAML 1.1 ones: ``010`` is ten (not octal eight), ``no``/``on`` are words (not
booleans) and ``2024-01-01`` is text (not a date). Only ``true``/``false``
are booleans and ``null``/``~``/nothing is None.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.config import DeploymentConfig, GuardConfig
from kit.exceptions import ConfigError, SetupError

PROFILES = ("cpu", "gpu")
GUARD_KEYS = tuple(f.name for f in dataclasses.fields(GuardConfig))
"""The guard's settings, written flat in a parameters mapping."""
DEPLOYMENT_KEYS = (
    "profile",
    *(f.name for f in dataclasses.fields(DeploymentConfig) if f.name != "guard"),
    *GUARD_KEYS,
)
"""Every key :func:`deployment` reads (other keys belong to the notebooks)."""

_YAML_12_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_YAML_12_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_YAML_12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


@functools.cache
def _loader():
    """A ``yaml.SafeLoader`` whose implicit scalars follow the YAML 1.2 core schema (built once)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the kit's environment and NVIDIA's image have PyYAML
        raise SetupError("reading parameters needs PyYAML (`pip install pyyaml`)") from exc

    replaced = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}

    class Yaml12Loader(yaml.SafeLoader):
        """PyYAML's safe loader with YAML 1.2's implicit booleans, integers and floats."""
        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag not in replaced]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    def construct_int(loader, node):
        """An implicit integer: decimal (leading zeros allowed), ``0o`` octal or ``0x`` hexadecimal."""
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)

    Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _YAML_12_BOOL, list("tTfF"))
    Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _YAML_12_INT, list("-+0123456789"))
    Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_12_FLOAT, list("-+0123456789."))
    Yaml12Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return Yaml12Loader


def loads(text: str, source: str = "parameters") -> Any:
    """The value YAML ``text`` holds, read with the YAML 1.2 core scalars; ConfigError naming ``source`` if invalid."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None


def load_mapping(text: str, source: str) -> dict[str, Any]:
    """The mapping YAML ``text`` holds (empty for an empty text); ConfigError naming ``source`` otherwise."""
    data = loads(text, source)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must hold a mapping of name: value, e.g. 'pipeline_instances: 2'")
    if isinstance(data.get("guard"), Mapping):
        keys = ", ".join(f"{k}: ..." for k in data["guard"])
        raise ConfigError(f"{source}: write the guard's settings flat, without 'guard:' ({keys})")
    return dict(data)


def load(path: Path | str | None) -> dict[str, Any]:
    """The mapping in a YAML parameters file (empty for None); ConfigError when missing or not a mapping."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file {path} does not exist")
    return load_mapping(path.read_text(encoding="utf-8"), f"parameters file {path}")


def deployment(params: Mapping[str, Any], *, strict: bool = False) -> DeploymentConfig:
    """A :class:`DeploymentConfig` from flat parameters.

    ``profile`` picks the preset (``cpu``: the tiny local model; ``gpu``:
    Llama-3-8B-Instruct); ``model``, ``engine_args`` (merged over the preset's),
    the instance counts, ``bls_mode``, ``blocking_variant``, parallelism and
    the guard's ``policy``/``actions``/``extra_words``/``allow_words``/``block_input``/``censor_output``/
    ``refusal`` override it. Other keys (notebook-only parameters) are ignored,
    unless ``strict``: then they are a ConfigError listing :data:`DEPLOYMENT_KEYS`.
    """
    if strict:
        unknown = sorted(set(params) - set(DEPLOYMENT_KEYS))
        if unknown:
            raise ConfigError(f"unknown deployment setting(s) {unknown}; known: {sorted(DEPLOYMENT_KEYS)}")
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
    guard_changes = {key: params[key] for key in GUARD_KEYS if params.get(key) not in (None, "")}
    if guard_changes:
        changes["guard"] = dataclasses.replace(base.guard, **guard_changes)
    return dataclasses.replace(base, **changes)
