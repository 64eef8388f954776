"""Triton entry point of llama_bls_ensemble: a thin shim over kit.triton_models.pipeline (kit code, unit-tested there)."""
import os
import sys

# Triton's Python stub ignores PYTHONPATH; the kit's server passes its folders here.
for _path in os.environ.get("KIT_PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

from kit.triton_models.pipeline import TritonPythonModel  # noqa: E402,F401
