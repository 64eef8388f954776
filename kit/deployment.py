"""A deployment from parameters: its weights in place, then its model repository written.

:func:`ensure_repository` is what ``kit build``, ``kit serve``, ``kit bench``
and notebooks 01/02 call: the parameters (:mod:`kit.params`) say which
deployment; the weights (:mod:`kit.weights`) are built or downloaded when
missing; :func:`kit.repository.build` writes the repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit import params as kit_params
from kit import repository, weights
from kit.exceptions import ConfigError


def ensure_repository(params: Mapping[str, Any], out: Path | str | None = None) -> Path:
    """Build the repository the parameters describe (the tiny model, or a hub download, first when needed).

    ``out`` defaults to ``params["repository"]``, then ``build/model_repository``.
    Returns the repository folder. Raises :class:`ConfigError` for invalid
    parameters (and for ``load_format: dummy`` without a local model folder),
    :class:`SetupError` when a download fails.
    """
    config = kit_params.deployment(params)
    if params.get("profile", "cpu") == "cpu" and Path(config.model) == weights.tiny_model_dir().resolve():
        weights.build_tiny_model()
    elif not config.model_is_local:
        if config.engine_args.get("load_format") == "dummy":
            raise ConfigError("load_format 'dummy' needs a local model folder (config + tokenizer); "
                              "build one with `python -m kit build --dummy-llama3`")
        local = weights.download_model(config.model)
        config = kit_params.deployment({**params, "model": str(local)})
    out = Path(out or params.get("repository") or repository.default_cpu_repository())
    return repository.build(config, out)
