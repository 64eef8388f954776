"""The server's processes, read from ``/proc``: sessions, liveness, stub command lines, ending them.

A server started by the kit leads a process session of its own; every stub and vLLM engine
process it spawns stays in that session, so the session id (the server's pid) finds them all.
Zombies count as gone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from kit.exceptions import ServerError

STUB_BINARY = "triton_python_backend_stub"
STACKS_SIGNAL = signal.SIGUSR2
"""A kit stub that gets this signal writes every Python thread's stack to the server log
(registered by :mod:`kit.triton_models`): ``kill -USR2 <stub pid>`` shows where a wedged model waits."""


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, session, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def processes() -> list[int]:
    """Every process this user can see (inside a container: the server and its stubs)."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def session_processes(sid: int) -> list[int]:
    """Every live process of session ``sid`` (the server and everything it spawned)."""
    found = []
    for pid in processes():
        fields = _stat(pid)
        if fields and len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(pid)
    return found


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"


def command_line(pid: int) -> str | None:
    """``pid``'s arguments joined by spaces, None when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def session_of(pid: int) -> int | None:
    """The session ``pid`` belongs to (its leader's pid), None when it is gone."""
    fields = _stat(pid)
    return int(fields[3]) if fields and len(fields) > 3 else None


def environment(pid: int) -> list[str] | None:
    """``pid``'s environment as ``NAME=value`` strings, None when it is gone or not this user's."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None


def stub_command_lines(pids) -> list[str]:
    """The command lines of the Triton Python stubs among ``pids`` (one stub per model instance)."""
    return [line for line in map(command_line, pids) if line and STUB_BINARY in line]


def model_stubs(sid: int, repository: Path | str, model: str) -> list[int]:
    """The stub processes of ``model`` (one per instance) in session ``sid``: their command line names its folder."""
    needle = f"{str(repository).rstrip('/')}/{model}/"
    return [pid for pid in session_processes(sid) if any(needle in line for line in stub_command_lines([pid]))]


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` in ``/proc/<pid>/status``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(mask, 16) >> (sig - 1) & 1)


def dump_stub_stacks(sid: int, pause_s: float = 0.5) -> list[int]:
    """Ask the stubs of session ``sid`` for their Python stacks, which they write to the server log.

    Only stubs that handle :data:`STACKS_SIGNAL` are asked (the signal's default action ends a
    process), one every ``pause_s`` seconds so that their stacks do not interleave in the log.
    Returns the pids asked.
    """
    asked = []
    for pid in session_processes(sid):
        if stub_command_lines([pid]) and catches(pid, STACKS_SIGNAL):
            if asked:
                time.sleep(pause_s)
            try:
                os.kill(pid, STACKS_SIGNAL)
            except ProcessLookupError:
                continue
            asked.append(pid)
    return asked


def kill_session(sid: int, timeout: float = 20.0) -> None:
    """SIGTERM every process of the session, then SIGKILL whatever is left after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        pids = session_processes(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not session_processes(sid):
                return
            time.sleep(0.1)
    left = session_processes(sid)
    if left:
        raise ServerError(f"processes {left} of the server survived SIGKILL; check `ps -s {sid}`")
