"""Helper package of the Triton + vLLM guardrail kit.

Importing ``kit`` must stay cheap and dependency-free: it runs inside Triton's
Python stub (where only the standard library and better-profanity are
guaranteed) as well as in notebooks. Submodules import their heavy
dependencies (tritonclient, pandas, vllm) themselves.
"""

from kit.exceptions import KitError

__all__ = ["KitError"]
__version__ = "0.1.0"
