"""The project's Jupyter kernel, ``triton-vllm-kit``: always this interpreter, whatever else is installed.

The notebooks name it in their metadata. The kernel-spec manager below serves
it (argv = this interpreter running ``ipykernel``) to papermill
(:mod:`kit.notebooks.runner`) and to JupyterLab (:mod:`kit.notebooks.lab`),
so a spec of that name left in the user's Jupyter folders by another
environment cannot win over it. ``make setup`` also writes the spec inside
``.venv`` (``ipykernel install --sys-prefix``) for Jupyter tools started
from the environment without the kit's help (papermill's CLI, editors).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

KERNEL_NAME = "triton-vllm-kit"
DISPLAY_NAME = "Python (triton-vllm-kit)"
#: The checkout whose ``kit`` the kernels import (the folder that holds the ``kit`` package).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def kernel_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``PYTHONPATH`` for the project's kernel: the checkout first, then what the caller had.

    Where the kit is not installed into the interpreter (an offline bundle installed with
    ``pip --target`` on a GPU host, a bare checkout), ``python -m kit`` works only from the
    checkout's folder, while papermill starts kernels in the notebooks' folder: without this
    the first ``import kit`` of every notebook failed.
    """
    existing = (os.environ if base is None else base).get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), existing) if p)}


class ProjectKernelSpecs(KernelSpecManager):
    """Kernel specs with :data:`KERNEL_NAME` added, served from this interpreter."""

    def find_kernel_specs(self) -> dict[str, str]:
        """The specs on disk plus the project's (name → resource folder)."""
        from ipykernel.kernelspec import RESOURCES

        return {**super().find_kernel_specs(), KERNEL_NAME: RESOURCES}

    def get_kernel_spec(self, kernel_name: str):
        """The project's spec for :data:`KERNEL_NAME`; the usual lookup for any other name."""
        if kernel_name == KERNEL_NAME:
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            spec = {**get_kernel_dict(), "display_name": DISPLAY_NAME, "env": kernel_environment()}
            return self.kernel_spec_class(resource_dir=RESOURCES, **spec)
        return super().get_kernel_spec(kernel_name)


class ProjectKernelManager(AsyncKernelManager):
    """papermill's kernel manager: the project's specs, kernels on local sockets."""

    @default("kernel_spec_manager")
    def _default_specs(self):
        return ProjectKernelSpecs(data_dir=self.data_dir)

    @default("transport")
    def _default_transport(self):
        # local sockets: nothing listens on TCP ports
        return "ipc" if os.name == "posix" else "tcp"

    @default("ip")
    def _default_ip(self):
        # ipc sockets are files named after `ip`; keep them out of the working directory
        if self.transport == "ipc":
            return os.path.join(tempfile.mkdtemp(prefix="kit-kernel-"), "kernel-ipc")
        return "127.0.0.1"
