"""Aborts from the guarded pipeline to the vLLM backend through a folder instead of BLS.

Triton 2.51's BLS response iterators have no ``cancel()``. The pipeline used to abort its LLM
request with a second BLS request naming it (the ``kit_abort`` parameter), and under bursts of
cancelled client streams that second request killed ``tritonserver`` itself (SIGSEGV or SIGABRT in
the Python backend's BLS code; ``benchmarks/bls_abort_crash.py`` shows it with two small models and
no kit code: the server died after 12–99 bursts with BLS aborts and survived 196 with a file per
abort). Both stubs are children of one ``tritonserver`` on one machine, so the pipeline now drops an
empty file named by its request's id into :func:`folder` of the LLM model, and the vLLM backend's
engine loop lists that folder every :data:`POLL_S` seconds. ``kit_abort`` stays for callers
outside the server.

Names are the pipeline's request ids (``uuid4().hex``); a file lives until the instance running
its request took it, or :data:`KEEP_S` seconds (an abort can overtake its request, and with several
instances of the LLM model only the one running the request removes it).
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
import time
from pathlib import Path
from typing import Callable

from kit.launcher import SHM_DIR

# How often the vLLM backend lists its folder (one listdir of a small in-memory folder).
POLL_S = 0.05
# How long a name is remembered, and its file kept, for a request that has not arrived yet.
KEEP_S = 60.0
FOLDER_PREFIX = "kit-aborts-"
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


def base_folder(server_pid: int) -> Path:
    """``/dev/shm/kit-aborts-<server pid>`` (memory), or the same under the temp folder without ``/dev/shm``."""
    root = SHM_DIR if SHM_DIR.is_dir() else Path(tempfile.gettempdir())
    return root / f"{FOLDER_PREFIX}{server_pid}"


def expire(seen: dict[str, float], now: float, keep_s: float) -> list[str]:
    """Drop and return the names of ``seen`` (name → when seen, oldest first) older than ``keep_s``."""
    old = []
    for name, at in seen.items():
        if now - at <= keep_s:
            break
        old.append(name)
    for name in old:
        del seen[name]
    return old


def folder(model: str, server_pid: int | None = None) -> Path:
    """The abort folder of LLM model ``model``; ``server_pid`` defaults to this process's parent.

    A stub's parent process is its ``tritonserver`` (the Python backend starts the stub with
    ``exec``), so both stubs of one server agree on the folder and two servers never share one.
    """
    return base_folder(os.getppid() if server_pid is None else server_pid) / model


def remove_folders(server_pid: int) -> None:
    """Remove everything a server's stubs left in their abort folders (the server has exited)."""
    shutil.rmtree(base_folder(server_pid), ignore_errors=True)


class AbortMailbox:
    """One model's abort folder: :meth:`post` from the pipeline, :meth:`read` and :meth:`remove` in the LLM.

    Not thread-safe: each side calls it from one thread (the pipeline's cancellation watcher, the
    vLLM backend's engine loop).
    """

    def __init__(self, path: Path, *, keep_s: float = KEEP_S, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._keep_s = keep_s
        self._clock = clock
        self._seen: dict[str, float] = {}  # name → when this reader first saw it (oldest first)

    def post(self, name: str) -> None:
        """Ask for the abort of request ``name`` (letters, digits, ``-_.``; not starting with a dot).

        Raises ``ValueError`` for any other name, ``OSError`` if the file cannot be written.
        """
        if not name or name[0] == "." or not set(name) <= _NAME_CHARS:
            raise ValueError(f"cannot post an abort for request id {name!r}: use letters, digits, '-', '_' or '.'")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / name).touch()

    def read(self) -> list[str]:
        """The names posted since this reader's last call, each once; forgets (and deletes) the old ones."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:  # nothing posted yet
            names = []
        now = self._clock()
        new = [name for name in names if name not in self._seen]
        for name in new:
            self._seen[name] = now
        for name in expire(self._seen, now, self._keep_s):
            self.remove(name)
        return new

    def remove(self, name: str) -> None:
        """Delete the file of an abort that has been carried out (another instance may have already)."""
        try:
            (self.path / name).unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Remove the folder and its server's folder if nothing is left in them."""
        for path in (self.path, self.path.parent):
            try:
                path.rmdir()
            except OSError:  # not empty (another instance or model uses it), or gone
                return
