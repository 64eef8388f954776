"""Entrypoint of the GPU image (``docker/Dockerfile``): model, repository, then ``tritonserver``.

``python -m kit.container`` (what the image runs) does three things, each a
small function that the unit tests drive offline:

1. :func:`settings_from_env` reads the container's environment:

   ==================== ========================================================
   ``MODEL_ID``         hub id (default ``meta-llama/Meta-Llama-3-8B-Instruct``)
                        or an absolute path to a model folder in the container
   ``MODELS_DIR``       the models volume (default ``/models``)
   ``MODEL_REPOSITORY`` where the Triton repository is written
                        (default ``/tmp/model_repository``)
   ``KIT_PARAMS``       optional YAML (inline, or the path of a YAML file) with
                        deployment keys as in ``params/gpu.yaml``, e.g.
                        ``{engine_args: {max_model_len: 4096}, extra_words: [x]}``
   ``HUGGINGFACE_HUB_TOKEN`` / ``HF_TOKEN``  the hub token (only for a download)
   ``TRITON_EXTRA_ARGS`` extra ``tritonserver`` flags (shell-quoted)
   ``TRITON_LOG_VERBOSE`` Triton's ``--log-verbose`` level (default 0)
   ==================== ========================================================

2. :func:`resolve_model` finds the weights in the models volume (a plain folder
   ``<MODELS_DIR>/<name>`` or a Hugging Face cache ``models--owner--name``) and
   downloads them with :func:`kit.weights.download_model` only when missing.
3. :func:`build_repository` writes the repository with
   :func:`kit.repository.build` from ``DeploymentConfig.gpu_default(model=<folder>)``:
   the same function and the same defaults as ``kit serve``, so the container
   and the CLI cannot drift apart.

Then :func:`serve` replaces this process with ``tritonserver``
(:func:`tritonserver_command`), without the hub token in its environment.

Other subcommands: ``download`` (only step 2: the Kubernetes init container),
``command`` (print the server command line), ``healthcheck [URL] [--live]``
(exit 0 when the URL answers 200 and every model has as many live Python stubs
as its config asks for: compose's and the image's health check, Kubernetes'
readiness and liveness probes) and ``check-image`` (run at image build time:
can the guard models import? :func:`kit.image.check_image`).

The token is never printed, logged, put into an error message or written to disk.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from kit import launcher
from kit.config import DeploymentConfig
from kit.exceptions import ConfigError, KitError, SetupError, exit_with
from kit.health import LIVE_PATH, READY_PATH, missing_stubs, probe, repository_index
from kit.processes import processes, stub_command_lines
from kit.weights import LLAMA3_REPO_ID, TOKEN_VARIABLES, download_model, is_complete, local_dir_for

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
READY_URL = f"http://localhost:{HTTP_PORT}{READY_PATH}"
LIVE_URL = f"http://localhost:{HTTP_PORT}{LIVE_PATH}"

DEFAULT_MODELS_DIR = "/models"
DEFAULT_REPOSITORY = "/tmp/model_repository"

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[kit.container] {message}", flush=True)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Everything the entrypoint reads from its environment (the token is kept out of ``repr``)."""

    model_id: str = LLAMA3_REPO_ID
    models_dir: Path = Path(DEFAULT_MODELS_DIR)
    repository: Path = Path(DEFAULT_REPOSITORY)
    params: Mapping[str, Any] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)
    extra_args: tuple[str, ...] = ()
    log_verbose: int = 0


def load_params(value: str | None) -> dict[str, Any]:
    """``KIT_PARAMS``: inline YAML or the path of a YAML file, in the dialect of ``params/*.yaml``.

    Read by :func:`kit.params.load_mapping` (one loader for every parameters
    mapping): flat keys, ``extra_words: [...]`` as in ``params/gpu.yaml``.
    """
    from kit import params as kit_params

    if value is None or not value.strip():
        return {}
    text, source = value, "KIT_PARAMS"
    candidate = value.strip()
    if "\n" not in candidate and (Path(candidate).is_file() or candidate.endswith((".yaml", ".yml"))):
        path = Path(candidate)
        if not path.is_file():
            raise ConfigError(
                f"KIT_PARAMS names the file {path}, which does not exist in the container; mount it or inline the YAML"
            )
        text, source = path.read_text(encoding="utf-8"), str(path)
    data = kit_params.load_mapping(text, source)
    if "model" in data:
        raise ConfigError(f"{source} sets 'model': set the MODEL_ID environment variable instead")
    return data


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
    env = os.environ if env is None else env
    model_id = env.get("MODEL_ID", "").strip() or LLAMA3_REPO_ID
    if not (Path(model_id).is_absolute() or model_id.count("/") == 1):
        raise ConfigError(
            f"MODEL_ID={model_id!r} is neither a hub id 'owner/name' (e.g. {LLAMA3_REPO_ID}) "
            "nor an absolute path to a model folder inside the container"
        )
    token = next((env[name].strip() for name in TOKEN_VARIABLES if env.get(name, "").strip()), None)
    verbose = env.get("TRITON_LOG_VERBOSE", "0").strip() or "0"
    if not verbose.isdigit():
        raise ConfigError(f"TRITON_LOG_VERBOSE must be a non-negative integer, got {verbose!r}")
    try:
        extra = tuple(shlex.split(env.get("TRITON_EXTRA_ARGS", "")))
    except ValueError as exc:
        raise ConfigError(f"TRITON_EXTRA_ARGS is not valid shell quoting: {exc}") from None
    return Settings(
        model_id=model_id,
        models_dir=Path(env.get("MODELS_DIR", "").strip() or DEFAULT_MODELS_DIR),
        repository=Path(env.get("MODEL_REPOSITORY", "").strip() or DEFAULT_REPOSITORY),
        params=load_params(env.get("KIT_PARAMS")),
        token=token,
        extra_args=extra,
        log_verbose=int(verbose),
    )


# --------------------------------------------------------------------------- the model


def find_cached_snapshot(models_dir: Path, repo_id: str) -> Path | None:
    """A complete snapshot of ``repo_id`` in a Hugging Face cache under ``models_dir``, if any.

    Accepts ``models_dir`` being a hub cache (``models--owner--name/...``) or an
    ``HF_HOME`` (``hub/models--owner--name/...``), so an existing cache can be mounted as is.
    """
    owner, _, name = repo_id.partition("/")
    for root in (Path(models_dir), Path(models_dir) / "hub"):
        repo = root / f"models--{owner}--{name}"
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file():
            pinned = snapshots / ref.read_text(encoding="utf-8").strip()
            if is_complete(pinned):
                return pinned
        candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
        for snapshot in candidates:
            if is_complete(snapshot):
                return snapshot
    return None


def missing_token_message(settings: Settings, target: Path) -> str:
    return (
        f"{settings.model_id} is not in the models volume ({target} is missing or incomplete) and no "
        "Hugging Face token is set, so it cannot be downloaded. Add this line to the .env file in the "
        "project root (the file docker compose reads with --env-file ./.env):\n"
        "    HUGGINGFACE_HUB_TOKEN=<your Hugging Face token>\n"
        "The token's account must have been granted access to the gated model on its hub page. "
        "On Kubernetes, put the token into the hf-token Secret (see deploy/README.md). "
        f"Or copy the model files (config.json, tokenizer, *.safetensors) into {target}."
    )


def _ensure_writable(models_dir: Path) -> None:
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(
            f"cannot create the models folder {models_dir} ({exc.strerror}); mount a writable volume there"
        ) from None
    if not os.access(models_dir, os.W_OK):
        raise SetupError(
            f"the models folder {models_dir} is not writable by this container's user (uid {os.getuid()}); "
            f"on the host run `mkdir -p models && sudo chown -R {os.getuid()}:{os.getgid()} models`, "
            "or download the model there yourself"
        )


def resolve_model(
    settings: Settings,
    *,
    download: Callable[..., Path] = download_model,
    progress: Progress = _say,
) -> Path:
    """The local model folder: found in the models volume, or downloaded into it."""
    if Path(settings.model_id).is_absolute():
        folder = Path(settings.model_id)
        if not is_complete(folder):
            raise SetupError(
                f"MODEL_ID points at {folder}, which lacks config.json, a tokenizer or *.safetensors weights; "
                "mount the complete model folder there or set MODEL_ID to a hub id"
            )
        progress(f"model folder {folder}")
        return folder
    target = local_dir_for(settings.model_id, settings.models_dir)
    if is_complete(target):
        progress(f"model {settings.model_id} found in {target}; no download")
        return target
    cached = find_cached_snapshot(settings.models_dir, settings.model_id)
    if cached is not None:
        progress(f"model {settings.model_id} found in the hub cache at {cached}; no download")
        return cached
    if not settings.token:
        raise SetupError(missing_token_message(settings, target))
    _ensure_writable(settings.models_dir)
    progress(f"model {settings.model_id} not in {settings.models_dir}: downloading it once (about 16 GB for Llama-3-8B)")
    folder = Path(download(settings.model_id, settings.models_dir, token=settings.token, progress=progress))
    if not is_complete(folder):
        raise SetupError(f"the download of {settings.model_id} left {folder} incomplete; delete it and restart")
    return folder


# --------------------------------------------------------------------------- the repository


def deployment_config(model_dir: Path | str, params: Mapping[str, Any] | None = None) -> DeploymentConfig:
    """``DeploymentConfig.gpu_default(model=model_dir)`` with ``params`` applied by :func:`kit.params.deployment`.

    ``engine_args`` in ``params`` is merged into the defaults (a key given there
    wins); every other key replaces the default; a key that is no deployment
    setting (a typo, a notebook's parameter) is a ConfigError.
    """
    from kit import params as kit_params

    params = dict(params or {})
    if "model" in params:
        raise ConfigError("set the model with MODEL_ID, not inside KIT_PARAMS")
    if params.get("profile", "gpu") != "gpu":
        raise ConfigError("the GPU image serves the gpu profile; remove 'profile' from KIT_PARAMS")
    return kit_params.deployment({**params, "profile": "gpu", "model": str(model_dir)}, strict=True)


def build_repository(config: DeploymentConfig, out_dir: Path | str) -> Path:
    """Write the Triton model repository for ``config`` (the one builder ``kit serve`` uses too)."""
    from kit.repository import build

    return build(config, out_dir)


# --------------------------------------------------------------------------- the server


def tritonserver_command(settings: Settings, repository: Path | str, binary: str = "tritonserver") -> list[str]:
    """The ``tritonserver`` command line (:func:`kit.launcher.command`): fixed ports on every interface."""
    return launcher.command(binary, launcher.Launch(
        repository=repository,
        http_port=HTTP_PORT,
        grpc_port=GRPC_PORT,
        metrics_port=METRICS_PORT,
        log_verbose=settings.log_verbose,
        extra_args=settings.extra_args,
    ))


def server_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment (:func:`kit.launcher.environment`): this one without the hub token."""
    return launcher.environment(env)


def prepare(
    settings: Settings,
    *,
    download: Callable[..., Path] = download_model,
    progress: Progress = _say,
) -> tuple[DeploymentConfig, Path]:
    """Resolve the model and build the repository; return the config and the repository folder."""
    model_dir = resolve_model(settings, download=download, progress=progress)
    config = deployment_config(model_dir, settings.params)
    repository = build_repository(config, settings.repository)
    progress(f"model repository written to {repository}")
    return config, repository


def serve(
    settings: Settings,
    *,
    download: Callable[..., Path] = download_model,
    execvpe: Callable[[str, list[str], dict[str, str]], Any] | None = None,
    which: Callable[[str], str | None] | None = None,
    progress: Progress = _say,
) -> None:
    """Prepare everything, then replace this process with ``tritonserver`` (it gets Docker's signals)."""
    binary = (which or shutil.which)("tritonserver")
    if binary is None:
        raise SetupError(
            "tritonserver is not on PATH: this entrypoint runs inside the image built from "
            "docker/Dockerfile (NVIDIA's Triton vLLM image); outside it use `python -m kit serve`"
        )
    _, repository = prepare(settings, download=download, progress=progress)
    command = tritonserver_command(settings, repository, binary=binary)
    progress("starting " + shlex.join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    (execvpe or os.execvpe)(binary, command, server_environment())


# --------------------------------------------------------------------------- health


def healthcheck(
    url: str = READY_URL,
    timeout: float = 5.0,
    *,
    repository: Path | str | None = None,
    stubs: Callable[[], list[str]] = lambda: stub_command_lines(processes()),
) -> int:
    """0 when ``url`` answers HTTP 200 and no model lost a stub, else 1 (Docker's HEALTHCHECK contract).

    Triton keeps a model READY (and ``/v2/health/*`` green) after one of its Python stub
    processes died, while the requests routed to that stub fail. So the check also counts
    each READY model's live stubs (``repository``: default ``MODEL_REPOSITORY``) against its
    ``config.pbtxt``, as ``kit status`` does: a container or pod that lost one is unhealthy
    and gets restarted.
    """
    status, why = probe(url, timeout)
    if status == 0:
        print(f"unhealthy: {url}: {why}")
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}")
        return 1
    repository = Path(repository or os.environ.get("MODEL_REPOSITORY", "").strip() or DEFAULT_REPOSITORY)
    base = url.split("/v2/", 1)[0]
    lost = missing_stubs(repository, repository_index(base), stubs())
    if lost:
        print("unhealthy: " + "; ".join(f"{name}: {why}" for name, why in lost.items()))
        return 1
    print(f"healthy: {url} answered {status}; every model has its stubs")
    return 0


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kit.container",
        description="Entrypoint of the kit's GPU image: fetch the model, build the repository, run tritonserver.",
    )
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("serve", help="download the model if needed, build the repository, exec tritonserver (default)")
    sub.add_parser("download", help="only make sure the model is in MODELS_DIR (Kubernetes init container)")
    sub.add_parser("command", help="build the repository and print the tritonserver command line")
    health = sub.add_parser("healthcheck", help="exit 0 when the URL answers 200 and every model has its stubs")
    health.add_argument("url", nargs="?", default=None, help=f"default {READY_URL} ({LIVE_URL} with --live)")
    health.add_argument("--live", action="store_true", help="liveness: ask /v2/health/live instead of ready")
    sub.add_parser("check-image", help="verify the image at build time (imports, numpy, backends)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    action = args.action or "serve"
    try:
        if action == "healthcheck":
            return healthcheck(args.url or (LIVE_URL if args.live else READY_URL))
        if action == "check-image":
            from kit.image import check_image

            for fact in check_image():
                _say(fact)
            _say("image check passed")
            return 0
        settings = settings_from_env()
        if action == "download":
            resolve_model(settings)
            return 0
        if action == "command":
            _, repository = prepare(settings)
            print(shlex.join(tritonserver_command(settings, repository)))
            return 0
        serve(settings)
        return 0  # pragma: no cover - serve() does not return
    except KitError as exc:
        return exit_with(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
