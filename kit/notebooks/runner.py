"""Runs the notebooks with papermill: one notebook (:func:`run_one`) or the demo, 01 → 04 (:func:`demo`).

Every run lands in its own folder, ``reports/<YYYYmmdd-HHMMSS>/``, with the
executed notebook, its HTML report (:mod:`kit.notebooks.export`), the data
files the notebooks write (JSON summaries, CSVs) and an ``index.html``
(:mod:`kit.notebooks.index`); ``reports/latest`` points at the newest run.

Parameters are checked (:mod:`kit.notebooks.parameters`) before any kernel
starts. A notebook that fails is still exported to HTML (papermill marks the
failing cell), then the failure is raised as a
:class:`~kit.exceptions.NotebookError` naming the notebook, the cell and the
HTML file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.exceptions import KitError, NotebookError
from kit.notebooks.export import export_html
from kit.notebooks.index import RUN_RECORD, write_index
from kit.notebooks.kernel import KERNEL_NAME
from kit.notebooks.parameters import (
    DEMO_NOTEBOOKS,
    all_notebooks,
    check_parameters,
    check_reserved,
    declared_parameters,
    gather,
    notebook_path,
    split_parameters,
)
from kit.paths import state_path
from kit.processes import STUB_BINARY, command_line, environment, kill_session, pid_alive, processes, session_of
from kit.weights import project_root

RUN_ID_VARIABLE = "KIT_DEMO_RUN"


def default_reports_dir() -> Path:
    """``reports/`` at the checkout's root, where every run folder lands."""
    return project_root() / "reports"


# --------------------------------------------------------------------------- running


@dataclass
class NotebookRun:
    """What one notebook run produced."""

    name: str
    notebook: Path
    html: Path | None
    ok: bool
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def record(self, run_dir: Path) -> dict[str, Any]:
        """The run as stored in ``run.json``: paths relative to ``run_dir``, seconds rounded to 0.1."""
        rel = lambda p: os.path.relpath(p, run_dir) if p else None  # noqa: E731
        return {
            "name": self.name,
            "notebook": rel(self.notebook),
            "html": rel(self.html),
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "parameters": self.parameters,
            "error": self.error,
        }


def new_run_dir(out_dir: Path | str | None = None) -> Path:
    """A fresh ``<out_dir>/<YYYYmmdd-HHMMSS>`` folder (``-2``, ``-3`` … when that second is taken)."""
    base = Path(out_dir or default_reports_dir())
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base / stamp, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base / f"{stamp}-{n}"


def _point_latest(run_dir: Path) -> Path:
    """``<reports>/latest`` → the run folder: a relative symlink, or a copy where links are impossible."""
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        latest.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        shutil.copytree(run_dir, latest)
    return latest


def _failure_message(name: str, exc: Exception, html_file: Path | None) -> str:
    from papermill.exceptions import PapermillExecutionError

    where = html_file or "(no HTML export)"
    if isinstance(exc, PapermillExecutionError):
        first = next((ln.strip() for ln in (exc.source or "").splitlines() if ln.strip()), "")
        return (
            f"notebook {name} failed in cell {exc.cell_index} (In [{exc.exec_count}]): {first!r} — "
            f"{exc.ename}: {exc.evalue}; the report marks the cell: {where}"
        )
    return f"notebook {name} failed: {type(exc).__name__}: {exc}; report: {where}"


def _as_shown(run_dir: Path) -> Path:
    """``run_dir`` relative to the checkout's root when it lies inside it, else absolute.

    The value is printed in the executed notebook and its HTML report: a report shared from
    ``reports/`` or committed under ``benchmarks/results/`` should not carry the path of the
    machine it ran on. The notebooks read it back with ``project_path``.
    """
    resolved = run_dir.resolve()
    try:
        return resolved.relative_to(project_root())
    except ValueError:
        return resolved


def execute(
    notebook: str | Path,
    run_dir: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> NotebookRun:
    """Execute one notebook into ``run_dir`` (.ipynb + .html); raise :class:`KitError` if it fails.

    Parameters are checked against the notebook first. The HTML is written
    whether or not the notebook succeeds.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    log = log or _print
    path = notebook_path(notebook)
    parameters = dict(parameters or {})
    check_parameters(path, parameters)
    declared = declared_parameters(path)
    injected = dict(parameters)
    if "report_dir" in declared:
        injected["report_dir"] = str(_as_shown(Path(run_dir)))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_nb = run_dir / path.name
    started = time.monotonic()
    failure: BaseException | None = None
    log(f"▶ {path.stem}" + (f"  ({_short(parameters)})" if parameters else ""))
    try:
        papermill.execute_notebook(
            str(path),
            str(out_nb),
            parameters=injected,
            kernel_name=KERNEL_NAME,
            kernel_manager_class="kit.notebooks.kernel.ProjectKernelManager",
            progress_bar=progress,
            cwd=str(path.parent),
        )
    except BaseException as exc:  # noqa: BLE001 - exported below, then re-raised
        failure = exc
    seconds = time.monotonic() - started
    html_file = None
    if out_nb.is_file():
        try:
            html_file = export_html(out_nb)
        except Exception as exc:  # noqa: BLE001 - a failed export must not hide the run's result
            log(f"  HTML export of {out_nb.name} failed: {exc}")
    result = NotebookRun(path.stem, out_nb, html_file, failure is None, seconds, parameters)
    if failure is None:
        log(f"✔ {path.stem} in {seconds:.0f}s → {html_file or out_nb}")
        return result
    if isinstance(failure, (KeyboardInterrupt, SystemExit)):
        result.error = "interrupted"
        log(f"✘ {path.stem} interrupted after {seconds:.0f}s; partial report: {html_file}")
        raise failure
    result.error = _failure_message(path.stem, failure, html_file)
    log(f"✘ {result.error}")
    error = NotebookError(result.error, result)
    raise error from (None if isinstance(failure, PapermillExecutionError) else failure)


def _short(parameters: Mapping[str, Any], limit: int = 160) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_run_record(run_dir: Path, params: Mapping[str, Any], runs: list[NotebookRun], **extra) -> None:
    record = {"parameters": dict(params), "notebooks": [r.record(run_dir) for r in runs], **extra}
    (run_dir / RUN_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def run_one(
    notebook: str | Path,
    params_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> NotebookRun:
    """Run one notebook into a new run folder with an index page.

    From a parameters file only the keys this notebook declares are used (a
    key no notebook declares is an error); every override must be one of its
    parameters.
    """
    path = notebook_path(notebook)
    file_params = gather(params_file, None)
    overrides = dict(overrides or {})
    check_reserved(overrides)
    check_parameters(path, overrides)
    everything = all_notebooks()
    shares = split_parameters(everything if path in everything else [*everything, path], file_params)
    parameters = {**shares[path], **overrides}
    run_dir = new_run_dir(out_dir)
    runs: list[NotebookRun] = []
    status = "failed"
    try:
        result = execute(path, run_dir, parameters, progress=progress)
        runs.append(result)
        status = "ok"
        return result
    except NotebookError as exc:
        runs.append(exc.run)
        raise
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    finally:
        _write_run_record(run_dir, parameters, runs, status=status)
        write_index(run_dir, parameters)
        _point_latest(run_dir)


# --------------------------------------------------------------------------- the demo


def _running_server_pid() -> int | None:
    """The pid of the detached server recorded in the state folder, when its process is alive."""
    from kit.detached import read_state

    state = read_state()
    return state.pid if state and pid_alive(state.pid) else None


_SERVER_PROCESSES = ("tritonserver", STUB_BINARY)


def _tagged_sessions(tag: str) -> list[int]:
    """Process sessions holding a Triton server (or the backend stubs it left) started with
    ``KIT_DEMO_RUN=<tag>`` in the environment: what this run started, and nothing else."""
    needle = f"{RUN_ID_VARIABLE}={tag}"
    own = os.getsid(0)
    found = set()
    for pid in processes() if Path("/proc").is_dir() else ():
        line = command_line(pid)
        if not line or not line.split(" ", 1)[0].endswith(_SERVER_PROCESSES):
            continue
        if needle not in (environment(pid) or ()):
            continue
        sid = session_of(pid)
        if sid is not None and sid != own:
            found.add(sid)
    return sorted(found)


def _stop_servers_of_this_run(tag: str, before_pid: int | None, log: Callable[[str], None]) -> None:
    """Stop the server this run started (if any); never the one that was running before it."""
    from kit.detached import read_state, stop_detached

    state = read_state()
    pid = state.pid if state else None
    if pid and pid != before_pid and pid_alive(pid):
        log(f"stopping the server this run started (pid {pid})")
        stop_detached()
    elif pid and pid != before_pid:
        state_path().unlink(missing_ok=True)  # a dead server's record
    for sid in _tagged_sessions(tag):  # started, but interrupted before its record was written
        if sid != before_pid:
            log(f"stopping the processes of a server this run started (session {sid})")
            with contextlib.suppress(KitError):
                kill_session(sid)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so clean-up runs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        """Raise KeyboardInterrupt from a signal handler, so ``finally`` blocks run."""
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo(
    params_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Run 01 → 04 with one server for the whole run; return the run folder.

    02 starts the server detached (or attaches to a ready one), 03 and 04 use
    it. A server this run started is stopped at the end, also after a failure
    or Ctrl-C; a server that was already running is left alone. The run's
    ``index.html`` is written in every case.
    """
    params = gather(params_file, overrides)
    shares = split_parameters(DEMO_NOTEBOOKS, params)  # every problem is reported before anything runs
    run_dir = new_run_dir(out_dir)
    tag = uuid.uuid4().hex
    before_pid = _running_server_pid()
    runs: list[NotebookRun] = []
    previous = os.environ.get(RUN_ID_VARIABLE)
    os.environ[RUN_ID_VARIABLE] = tag  # inherited by the kernels and the server they start
    started = time.monotonic()
    _print(f"demo run → {run_dir}")
    status = "failed"
    try:
        with _sigterm_as_interrupt():
            for path, share in shares.items():
                try:
                    runs.append(execute(path, run_dir, share, progress=progress))
                except NotebookError as exc:
                    runs.append(exc.run)
                    raise
                except BaseException:
                    partial = (run_dir / path.name).with_suffix(".html")
                    runs.append(NotebookRun(path.stem, run_dir / path.name, partial if partial.is_file() else None,
                                            False, 0.0, share, "interrupted"))
                    raise
        status = "ok"
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    finally:
        try:
            _stop_servers_of_this_run(tag, before_pid, _print)
        finally:
            if previous is None:
                os.environ.pop(RUN_ID_VARIABLE, None)
            else:
                os.environ[RUN_ID_VARIABLE] = previous
            _write_run_record(run_dir, params, runs, status=status, seconds=round(time.monotonic() - started, 1))
            index = write_index(run_dir, params)
            _point_latest(run_dir)
            _print(f"demo {status} in {time.monotonic() - started:.0f}s; open {index}")
    return run_dir


