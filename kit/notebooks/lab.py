"""``make lab`` (``python -m kit.notebooks.lab``): JupyterLab on ``notebooks/`` with the project's kernel.

JupyterLab refuses to start as root unless told ``--allow-root`` (containers
and CI machines run as root); it is added only when this process is root.
The kernel is :data:`kit.notebooks.kernel.KERNEL_NAME`, served by
:class:`~kit.notebooks.kernel.ProjectKernelSpecs` (this interpreter): nothing
is written into the user's Jupyter folders. Extra arguments go to JupyterLab as they are
(``--no-browser``, ``--port=8899``, ``--ServerApp.ip=0.0.0.0``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from kit.notebooks.kernel import KERNEL_NAME
from kit.notebooks.parameters import NOTEBOOKS_DIR
from kit.weights import project_root


def command(extra: Sequence[str] = (), *, as_root: bool | None = None) -> list[str]:
    """The JupyterLab command line: notebooks/ as its root, the project's kernel, ``--allow-root`` as root."""
    argv = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
        "--ServerApp.kernel_spec_manager_class=kit.notebooks.kernel.ProjectKernelSpecs",
        f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
    ]
    if (os.geteuid() == 0) if as_root is None else as_root:
        argv.append("--allow-root")
    return argv + list(extra)


def environment() -> dict[str, str]:
    """This environment with the checkout first on ``PYTHONPATH``, so the server finds the kit's kernel specs."""
    env = dict(os.environ)
    root = str(project_root())
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with JupyterLab (Ctrl-C stops it, as usual)."""
    args = command(sys.argv[1:] if argv is None else argv)
    os.execve(args[0], args, environment())


if __name__ == "__main__":  # pragma: no cover
    main()
