"""The GPU image's own check, run once when it is built (``python -m kit.container check-image``).

It fails the build, with every problem at once, when the guard and pipeline models
could not import inside Triton's Python stub, when numpy is 2.x (see :func:`check_image`),
or when ``tritonserver`` or its ``python``/``vllm`` backends are missing.
"""

from __future__ import annotations

import importlib
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from kit.exceptions import SetupError

# Modules the guard and pipeline models import inside Triton's Python stub
# (besides triton_python_backend_utils, which only exists there).
GUARD_MODULES = (
    "better_profanity",
    "numpy",
    "kit.guardrails",
    "kit.pipeline",
    "kit.sampling",
    "kit.triton_models",
)


def check_image(
    modules: Sequence[str] = GUARD_MODULES,
    *,
    allow_numpy2: bool | None = None,
    which: Callable[[str], str | None] = shutil.which,
    backends_dir: Path = Path("/opt/tritonserver/backends"),
) -> list[str]:
    """Verify the image can serve the repository; return one line per fact, raise SetupError otherwise.

    numpy must be < 2 unless ``KIT_ALLOW_NUMPY2=1``: Triton's Python backend of
    the 2.5x releases lists numpy 2 as a known issue (BYTES tensors, which every
    text tensor of this pipeline is, failed to deserialize).
    """
    problems: list[str] = []
    facts: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every broken import at once
            problems.append(f"cannot import {name}: {exc}")
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        facts.append(f"numpy {numpy.__version__}")
        if allow_numpy2 is None:
            allow_numpy2 = os.environ.get("KIT_ALLOW_NUMPY2") == "1"
        if int(numpy.__version__.split(".")[0]) >= 2 and not allow_numpy2:
            problems.append(
                f"numpy {numpy.__version__} is installed; the guard models need numpy<2 in Triton's "
                "Python backend: choose a base image with numpy 1.x, add `numpy<2` to the pip install "
                "in docker/Dockerfile, or build with KIT_ALLOW_NUMPY2=1 if this Triton release supports it"
            )
    for dist in ("vllm", "transformers", "better-profanity"):
        try:
            facts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            facts.append(f"{dist} not installed")
    if which("tritonserver") is None:
        problems.append("tritonserver is not on PATH")
    for backend in ("python", "vllm"):
        if not (backends_dir / backend).is_dir():
            problems.append(f"Triton backend {backend!r} missing under {backends_dir}")
    if problems:
        raise SetupError("the image cannot serve the kit's repository:\n  " + "\n  ".join(problems))
    return facts
