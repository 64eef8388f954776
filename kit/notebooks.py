"""Runs the notebooks with papermill and exports offline HTML reports.

Every run lands in its own folder, ``reports/<YYYYmmdd-HHMMSS>/``, with the
executed notebook, its HTML export, the data files the notebooks write (JSON
summaries, CSVs) and an ``index.html`` that links them all; ``reports/latest``
points at the newest run and ``reports/index.html`` lists every run.

papermill only warns about parameters a notebook does not declare; here they
are an error (:class:`~kit.exceptions.ConfigError`) raised before any kernel
starts, as is a value of the wrong type. A notebook that fails is still
exported to HTML (papermill marks the failing cell), then the failure is
raised as a :class:`~kit.exceptions.KitError` naming the notebook, the cell
and the HTML file.

>>> from kit import notebooks                                # doctest: +SKIP
>>> notebooks.demo(params_file="params/cpu.yaml")            # doctest: +SKIP
>>> notebooks.run_one("03", overrides={"case_max_tokens": 8})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import html
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kit.exceptions import ConfigError, KitError
from kit.models import project_root

NOTEBOOKS_DIR = project_root() / "notebooks"
DEMO_NOTEBOOKS = (
    "01_build_model_repository",
    "02_start_server",
    "03_guardrails",
    "04_performance",
)
KERNEL_NAME = "python3"
RUNNER_PARAMETERS = ("report_dir",)
"""Parameters the runner sets itself (the run folder); a parameters file cannot."""
GUARDRAILS_SUMMARY = "guardrails_summary.json"
PERFORMANCE_SUMMARY = "performance_summary.json"
RUN_RECORD = "run.json"
RUN_ID_VARIABLE = "KIT_DEMO_RUN"

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list, tuple),
    "dict": (dict,),
}


def default_reports_dir() -> Path:
    return project_root() / "reports"


# --------------------------------------------------------------------------- parameters


def parse_value(text: str) -> Any:
    """A ``-p name value`` value as YAML reads it: ``8`` → 8, ``[1, 2]`` → list, ``true`` → True.

    Text YAML cannot read (or reads as something other than a scalar, list or
    mapping) stays a string.
    """
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("null", "Null", "NULL", "~"):
        return text  # an empty value is the empty string, not None
    if isinstance(value, (_dt.date, _dt.datetime)):
        return text
    return value


def project_path(text: str | Path) -> Path:
    """A path parameter as the notebooks read it: absolute as given, relative to the checkout's root otherwise.

    The notebooks run with ``notebooks/`` as their working directory (as in
    JupyterLab), but paths in parameters files and on the command line are
    written from the root: ``benchmarks/results/h100``, ``models/tiny-llama``.
    """
    path = Path(text).expanduser()
    return path if path.is_absolute() else project_root() / path


def notebook_path(notebook: str | Path) -> Path:
    """The notebook a user means: a path, a file name, a stem (``03_guardrails``) or a prefix (``03``)."""
    path = Path(notebook)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    candidates = [NOTEBOOKS_DIR / path.name, NOTEBOOKS_DIR / f"{path.name}.ipynb"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    matches = sorted(NOTEBOOKS_DIR.glob(f"{path.name}*.ipynb"))
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.stem for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")))
    raise ConfigError(f"no notebook {notebook!r}; choose one of: {known}")


def declared_parameters(notebook: str | Path) -> dict[str, dict[str, str]]:
    """The parameters a notebook's ``parameters`` cell declares: name → type, default, help."""
    import papermill

    path = notebook_path(notebook)
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:  # noqa: BLE001 - papermill raises several kinds for broken files
        raise ConfigError(f"cannot read the parameters of {path.name}: {exc}") from None
    return {name: dict(info) for name, info in found.items()}


def check_parameters(notebook: str | Path, parameters: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a parameter the notebook does not declare or a value of the wrong type."""
    path = notebook_path(notebook)
    declared = declared_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ConfigError(
            f"{path.stem} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(set(declared) - set(RUNNER_PARAMETERS))) or '(none)'}"
        )
    for name, value in parameters.items():
        type_name = declared[name].get("inferred_type_name", "None")
        expected = _PY_TYPES.get(type_name)
        if expected is None or value is None:
            continue
        wrong = not isinstance(value, expected) or (type_name in ("int", "float") and isinstance(value, bool))
        if wrong:
            raise ConfigError(
                f"{path.stem}: parameter {name} must be {type_name} "
                f"(default {declared[name].get('default')}), got {value!r}"
            )


def split_parameters(notebooks: Iterable[str | Path], parameters: Mapping[str, Any]) -> dict[Path, dict[str, Any]]:
    """Each notebook's share of a flat parameter mapping; a key no notebook declares is an error."""
    paths = [notebook_path(nb) for nb in notebooks]
    declared = {path: declared_parameters(path) for path in paths}
    reserved = sorted(set(parameters) & set(RUNNER_PARAMETERS))
    if reserved:
        raise ConfigError(f"{', '.join(reserved)} is set by the runner (the run folder); remove it from the parameters")
    everything = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(parameters) - everything)
    if unknown:
        raise ConfigError(
            f"no notebook declares the parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {', '.join(sorted(everything - set(RUNNER_PARAMETERS)))}"
        )
    shares = {}
    for path in paths:
        share = {k: v for k, v in parameters.items() if k in declared[path]}
        check_parameters(path, share)
        shares[path] = share
    return shares


def _gather(params_file: str | Path | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    from kit import params as kit_params

    merged = dict(kit_params.load(params_file))
    merged.update(overrides or {})
    return merged


# --------------------------------------------------------------------------- kernel and HTML


def _kernel_manager_class():
    """A kernel manager whose ``python3`` kernel is always this interpreter.

    A ``python3`` kernelspec in the user's Jupyter folder (another Python,
    another environment) would otherwise win over the virtual environment's.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreterSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == KERNEL_NAME:
                from ipykernel.kernelspec import RESOURCES, get_kernel_dict

                return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    class ThisInterpreterKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self):
            return ThisInterpreterSpecs(data_dir=self.data_dir)

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

    return ThisInterpreterKernelManager


# The lab template minus the three scripts it loads from CDNs (require.js,
# MathJax, mermaid): the reports must open offline. Plotly brings its own.
_OFFLINE_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(notebook_file: Path, html_file: Path | None = None) -> Path:
    """Write an offline HTML export of an (executed) notebook next to it."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    notebook_file = Path(notebook_file)
    html_file = Path(html_file or notebook_file.with_suffix(".html"))
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"kit_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="kit_offline.html.j2",
    )
    nb = nbformat.read(notebook_file, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook_file.stem}})
    html_file.write_text(body, encoding="utf-8")
    return html_file


def _offline_renderer():
    """A plotly renderer whose figures need no network: plotly.js is embedded once, on activation."""
    from plotly.io.base_renderers import MimetypeRenderer

    class OfflineRenderer(MimetypeRenderer):
        def __init__(self):
            self.embedded = False

        def activate(self):
            if self.embedded:
                return
            from IPython.display import HTML, display
            from plotly.offline import get_plotlyjs

            display(HTML(f'<script type="text/javascript">{get_plotlyjs()}</script>'))
            self.embedded = True

        def to_mimebundle(self, fig_dict):
            from plotly.io import to_html

            config = {"displaylogo": False, "responsive": True}
            page = to_html(fig_dict, config=config, include_plotlyjs=False, include_mathjax=False,
                           full_html=False, default_width="100%", default_height=480, validate=False)
            figure = {"data": fig_dict.get("data", []), "layout": fig_dict.get("layout", {}), "config": config}
            # text/html for the HTML export, the plotly mimetype for JupyterLab's plotly extension
            return {"text/html": page, "application/vnd.plotly.v1+json": figure}

    return OfflineRenderer()


def use_offline_plotly() -> None:
    """Make ``fig.show()`` produce figures that render in the exported HTML without network access.

    Call it once near the top of a notebook: it embeds plotly.js in that cell's
    output (again on every re-run, since re-running replaces that output).
    """
    import plotly.io as pio

    if "kit_offline" not in pio.renderers:
        pio.renderers["kit_offline"] = _offline_renderer()
    pio.renderers["kit_offline"].embedded = False
    pio.renderers.default = "kit_offline"


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
        injected["report_dir"] = str(Path(run_dir).resolve())
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
            kernel_manager_class=_kernel_manager_class(),
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


class NotebookError(KitError):
    """A notebook failed; ``run`` tells which, and where its report is."""

    def __init__(self, message: str, run: NotebookRun):
        super().__init__(message)
        self.run = run


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
    file_params = _gather(params_file, None)
    overrides = dict(overrides or {})
    reserved = sorted(set(overrides) & set(RUNNER_PARAMETERS))
    if reserved:
        raise ConfigError(f"{', '.join(reserved)} is set by the runner (the run folder); remove it from the parameters")
    check_parameters(path, overrides)
    everything = [notebook_path(nb) for nb in _all_notebooks()]
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


def _all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------- the demo


def _running_server_pid() -> int | None:
    """The pid of the detached server recorded in the state folder, when its process is alive."""
    from kit import server as srv

    state = srv.read_state()
    if state and srv.pid_alive(state.get("pid")):
        return state.get("pid")
    return None


_SERVER_PROCESSES = (b"tritonserver", b"triton_python_backend_stub")


def _tagged_sessions(tag: str) -> list[int]:
    """Process sessions holding a Triton server (or the backend stubs it left) started with
    ``KIT_DEMO_RUN=<tag>`` in the environment: what this run started, and nothing else."""
    needle = f"{RUN_ID_VARIABLE}={tag}".encode()
    own = os.getsid(0)
    found = set()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            if not argv0.endswith(_SERVER_PROCESSES):
                continue
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        sid = int(fields[3])
        if sid != own:
            found.add(sid)
    return sorted(found)


def _stop_servers_of_this_run(tag: str, before_pid: int | None, log: Callable[[str], None]) -> None:
    """Stop the server this run started (if any); never the one that was running before it."""
    from kit import server as srv

    state = srv.read_state()
    pid = state.get("pid") if state else None
    if pid and pid != before_pid and srv.pid_alive(pid):
        log(f"stopping the server this run started (pid {pid})")
        srv.stop_detached()
    elif pid and pid != before_pid:
        srv.state_path().unlink(missing_ok=True)  # a dead server's record
    for sid in _tagged_sessions(tag):  # started, but interrupted before its record was written
        if sid != before_pid:
            log(f"stopping the processes of a server this run started (session {sid})")
            with contextlib.suppress(KitError):
                srv.kill_session(sid)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C, so clean-up runs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
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
    params = _gather(params_file, overrides)
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


# --------------------------------------------------------------------------- index pages


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 980px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.muted { color: #656d76; } table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .35rem .7rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } code { background: #f6f8fa; padding: 0 .25rem; border-radius: 3px; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
.big { font-size: 1.4rem; font-weight: 600; }
"""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def write_index(run_dir: Path | str, params: Mapping[str, Any] | None = None) -> Path:
    """Write ``<run_dir>/index.html``: every report of the run, its parameters, the guardrail
    pass/fail summary and the headline performance numbers; refresh ``<reports>/index.html``.
    """
    run_dir = Path(run_dir)
    record = _read_json(run_dir / RUN_RECORD) or {}
    params = dict(params if params is not None else record.get("parameters", {}))
    e = html.escape
    statuses = {n["name"]: n for n in record.get("notebooks", [])}
    rows = []
    for report in sorted(run_dir.glob("*.html")):
        if report.name == "index.html":
            continue
        info = statuses.get(report.stem, {})
        state = "" if not info else ('<span class="ok">passed</span>' if info.get("ok") else
                                     f'<span class="bad">failed</span><br><span class="muted">{e(info.get("error", ""))}</span>')
        seconds = f"{info['seconds']:.0f} s" if info.get("seconds") is not None else ""
        nb = report.with_suffix(".ipynb")
        nb_link = f' · <a href="{e(nb.name)}">notebook</a>' if nb.is_file() else ""
        rows.append(f'<tr><td><a href="{e(report.name)}">{e(report.stem)}</a>{nb_link}</td><td>{state}</td><td>{seconds}</td></tr>')
    for name, info in statuses.items():  # a notebook that did not even produce HTML
        if not (run_dir / f"{name}.html").is_file():
            rows.append(f'<tr><td>{e(name)}</td><td><span class="bad">no report</span>'
                        f'<br><span class="muted">{e(info.get("error", ""))}</span></td><td></td></tr>')

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Reports of run {e(run_dir.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Triton + vLLM guardrail kit — run {e(run_dir.name)}</h1>",
    ]
    status = record.get("status")
    if status:
        css = "ok" if status == "ok" else "bad"
        parts.append(f'<p>Status: <span class="{css}">{e(status)}</span>'
                     + (f' · {record["seconds"]:.0f} s' if record.get("seconds") is not None else "") + "</p>")
    parts += ["<h2>Reports</h2>", "<table><tr><th>Notebook</th><th>Result</th><th>Time</th></tr>",
              *rows, "</table>"]

    guard = _read_json(run_dir / GUARDRAILS_SUMMARY)
    if guard:
        passed, cases = guard.get("passed", 0), guard.get("cases", 0)
        css = "ok" if guard.get("failed", 1) == 0 else "bad"
        parts += ["<h2>Guardrails</h2>",
                  f'<p class="big"><span class="{css}">{passed} / {cases}</span> cases passed</p>']
        failed = [c for c in guard.get("results", []) if not c.get("passed")]
        if failed:
            parts.append("<table><tr><th>Failed case</th><th>Expected</th><th>Actual</th></tr>")
            parts += [f"<tr><td>{e(str(c.get('case')))}</td><td>{e(str(c.get('expected')))}</td>"
                      f"<td>{e(str(c.get('actual')))}</td></tr>" for c in failed]
            parts.append("</table>")
        if guard.get("metrics"):
            parts.append("<table><tr><th>Guard metric (this run)</th><th>Change</th></tr>")
            parts += [f"<tr><td><code>{e(k)}</code></td><td>{e(_fmt(v))}</td></tr>" for k, v in guard["metrics"].items()]
            parts.append("</table>")

    perf = _read_json(run_dir / PERFORMANCE_SUMMARY)
    if perf:
        parts.append("<h2>Performance</h2>")
        if perf.get("source"):
            parts.append(f'<p class="muted">{e(str(perf["source"]))}</p>')
        headline = perf.get("headline") or {}
        if headline:
            parts.append("<table><tr><th>Headline</th><th>Value</th></tr>")
            parts += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in headline.items()]
            parts.append("</table>")
        ratios = perf.get("ratios") or {}
        if ratios:
            parts.append("<table><tr><th>Ratio</th><th>Value</th></tr>")
            parts += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in ratios.items()]
            parts.append("</table>")

    parts.append("<h2>Parameters</h2>")
    if params:
        parts.append("<table><tr><th>Name</th><th>Value</th></tr>")
        parts += [f"<tr><td><code>{e(k)}</code></td><td><code>{e(_fmt(v))}</code></td></tr>" for k, v in sorted(params.items())]
        parts.append("</table>")
    else:
        parts.append('<p class="muted">every notebook ran with its defaults</p>')
    parts.append('<p class="muted">Each report is a self-contained HTML file and opens offline.</p></body></html>')
    index = run_dir / "index.html"
    index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    _write_reports_index(run_dir.parent)
    return index


def _write_reports_index(reports_dir: Path) -> Path:
    """``<reports>/index.html``: every run folder, newest first."""
    e = html.escape
    runs = sorted((p for p in reports_dir.iterdir() if p.is_dir() and not p.is_symlink()
                   and p.name != "latest" and (p / "index.html").is_file()), reverse=True)
    rows = []
    for run in runs:
        record = _read_json(run / RUN_RECORD) or {}
        names = ", ".join(n["name"] for n in record.get("notebooks", []))
        status = record.get("status") or ("ok" if all(n.get("ok") for n in record.get("notebooks", [])) else "failed")
        css = "ok" if status == "ok" else "bad"
        rows.append(f'<tr><td><a href="{e(run.name)}/index.html">{e(run.name)}</a></td>'
                    f'<td><span class="{css}">{e(status)}</span></td><td>{e(names)}</td></tr>')
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Kit reports</title>'
        f"<style>{_STYLE}</style></head><body><h1>Reports</h1>"
        '<p><a href="latest/index.html">latest run</a></p>'
        "<table><tr><th>Run</th><th>Status</th><th>Notebooks</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )
    index = reports_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
