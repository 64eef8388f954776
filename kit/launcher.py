"""One launcher: the ``tritonserver`` command line and environment, for ``kit serve`` and the container.

:class:`kit.server.Server` (the pip-installed server, any ports, loopback by default) and
:mod:`kit.container` (NVIDIA's image, ports 8000-8002 on every interface) both build their
command with :func:`command` and their environment with :func:`environment`, so the two
runtimes cannot drift apart on shared memory, draining or the hub token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from kit.weights import TOKEN_VARIABLES

# Shared memory of Triton's Python backend (NVIDIA's vLLM backend is one too): every model
# instance maps a region of shm-default-byte-size in /dev/shm and grows it by
# shm-growth-byte-size when a message does not fit. The backend's 1 MiB default grows on the
# first long prompt or answer (1 MiB at a time while hundreds of streams are in flight);
# 32 MiB covers the pipeline's text tensors without growing, and a handful of instances stays
# far below the 2 GiB /dev/shm that docker-compose.yml and the Kubernetes pod give.
SHM_DEFAULT_BYTES = 32 * 1024 * 1024
SHM_GROWTH_BYTES = 16 * 1024 * 1024
SHM_DIR = Path("/dev/shm")
# Seconds Triton lets requests in flight finish after SIGTERM (``--exit-timeout-secs``): it
# refuses new requests at once, lets streams run to their end, then exits. Kubernetes'
# terminationGracePeriodSeconds and compose's stop_grace_period are sized from it.
DRAIN_S = 30


@dataclass(frozen=True)
class Launch:
    """What differs between one server and another: repository, ports, addresses, flags.

    ``host`` None binds every interface (Triton's default: the container); ``backend_dir``
    None uses the installation's own (``/opt/tritonserver/backends``); ``shm_prefix`` names
    the shared-memory regions, so that several servers can run on one machine.
    """

    repository: Path | str
    http_port: int
    grpc_port: int
    metrics_port: int
    host: str | None = None
    backend_dir: Path | str | None = None
    shm_prefix: str | None = None
    drain_s: int = DRAIN_S
    log_verbose: int = 0
    extra_args: tuple[str, ...] = ()


def command(binary: Path | str, launch: Launch) -> list[str]:
    """The ``tritonserver`` argv for ``launch``; ``launch.extra_args`` come last (a repeated flag's last value wins)."""
    args = [str(binary), f"--model-repository={launch.repository}"]
    if launch.backend_dir is not None:
        args.append(f"--backend-directory={launch.backend_dir}")
    if launch.host is not None:
        args += [f"--http-address={launch.host}", f"--grpc-address={launch.host}", f"--metrics-address={launch.host}"]
    args += [
        f"--http-port={launch.http_port}",
        f"--grpc-port={launch.grpc_port}",
        f"--metrics-port={launch.metrics_port}",
        "--allow-metrics=true",
    ]
    if launch.shm_prefix:
        args.append(f"--backend-config=python,shm-region-prefix-name={launch.shm_prefix}")
    args += [
        f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
        f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
        f"--exit-timeout-secs={launch.drain_s}",
        f"--log-verbose={launch.log_verbose}",
        *launch.extra_args,
    ]
    return args


def remove_shared_memory(prefix: str) -> int:
    """Unlink the Python-backend regions ``SHM_DIR/prefix*`` of a server that has exited; returns how many.

    The server and its stubs unlink them on an orderly exit (a stub outliving its server does
    too), but a server killed together with its stubs (SIGKILL to the session, as
    ``kill_session`` sends to whatever outlives SIGTERM, or a crash of both) leaves each region
    behind, 32 MiB of ``/dev/shm`` (memory) apiece, until the machine restarts. Call it once no
    process of that server runs; a region still mapped stays mapped, only its name goes.
    """
    removed = 0
    for region in SHM_DIR.glob(f"{prefix}*") if prefix else ():
        try:
            region.unlink()
            removed += 1
        except FileNotFoundError:
            pass  # its server unlinked it meanwhile
    return removed


def environment(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """The server's environment: ``base`` (default ``os.environ``) without the hub token, plus ``overrides``.

    The kit downloads weights before the server starts, so the server, its stubs and engine
    processes never need the token; it is kept out of all of them.
    """
    env = dict(os.environ if base is None else base)
    for name in TOKEN_VARIABLES:
        env.pop(name, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # vLLM's engine processes log non-ASCII text; under the C locale that raised logging errors
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env.update(overrides)
    return env
