"""The notebooks and their papermill runner (kit.notebooks)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kit import notebooks
from kit import params as kit_params
from kit.notebooks import parameters, runner
from kit.exceptions import ConfigError, KitError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMETER_LINE = re.compile(
    r"^(?P<name>[a-z_][a-z0-9_]*): (?P<type>int|float|bool|str|list|dict) = (?P<default>\S.*?)  # (?P<help>\S.*)$"
)
NETWORK_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def parameters_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


# --------------------------------------------------------------------------- committed notebooks


def test_the_four_notebooks_exist():
    """notebooks/ holds the four numbered notebooks the demo runs, in order."""
    assert [p.stem for p in NOTEBOOKS] == list(notebooks.DEMO_NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    """No outputs, no execution counts, no papermill metadata: the committed notebook is its source."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata, f"cell {i} carries run metadata"
    assert "papermill" not in nb.metadata
    assert nb.metadata["kernelspec"]["name"] == notebooks.KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exactly_one_documented_parameters_cell(path):
    """One cell tagged parameters; every line reads `name: type = default  # help` and papermill parses it."""
    nb = nbformat.read(path, as_version=4)
    cells = parameters_cells(nb)
    assert len(cells) == 1
    lines = cells[0].source.splitlines()
    assert lines, "the parameters cell is empty"
    names = []
    for line in lines:
        match = PARAMETER_LINE.match(line)
        assert match, f"not `name: type = default  # help`: {line!r}"
        names.append(match["name"])
        # papermill skips a line with a second '=' (in the default or the help) without a word
        assert line.count("=") == 1, f"papermill cannot parse a line with two '=': {line!r}"
    inspected = papermill.inspect_notebook(str(path))
    assert list(inspected) == names
    for line, info in zip(lines, inspected.values(), strict=True):
        match = PARAMETER_LINE.match(line)
        assert info["inferred_type_name"] == match["type"] and info["help"] == match["help"]
    namespace: dict = {}
    exec(cells[0].source, namespace)  # the defaults are valid Python of the declared type
    for name, info in inspected.items():
        assert isinstance(namespace[name], parameters.PY_TYPES[info["inferred_type_name"]]), name


def test_notebooks_share_parameter_meanings():
    """A parameter declared by several notebooks has the same type and default in each (one flat file feeds them all)."""
    seen: dict[str, tuple] = {}
    for path in NOTEBOOKS:
        for name, info in notebooks.declared_parameters(path).items():
            key = (info["inferred_type_name"], info["default"])
            assert seen.setdefault(name, key) == key, f"{name} differs in {path.stem}"


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_parameter_files_only_hold_declared_parameters(name):
    """params/cpu.yaml and params/gpu.yaml are accepted by the runner as they are."""
    params = kit_params.load(ROOT / "params" / name)
    shares = notebooks.split_parameters(notebooks.DEMO_NOTEBOOKS, params)
    assert set().union(*map(set, shares.values())) == set(params)
    kit_params.deployment(params)  # and they describe a valid deployment preset


def test_cpu_yaml_is_the_embedded_default():
    """params/cpu.yaml repeats the notebooks' own defaults: running with it or without it is the same."""
    params = kit_params.load(ROOT / "params" / "cpu.yaml")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        defaults: dict = {}
        exec(parameters_cells(nb)[0].source, defaults)
        for key, value in params.items():
            if key in defaults:
                assert defaults[key] == value, f"{path.stem}: {key} is {defaults[key]!r}, cpu.yaml says {value!r}"


def test_gpu_yaml_is_llama3_with_the_large_sweeps():
    """params/gpu.yaml serves Llama-3-8B-Instruct and sweeps concurrency 1…256 and max_tokens 50/300/600."""
    params = kit_params.load(ROOT / "params" / "gpu.yaml")
    assert params["profile"] == "gpu"
    assert params["concurrency"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert params["max_tokens"] == [50, 300, 600]
    assert kit_params.deployment(params).model == "meta-llama/Meta-Llama-3-8B-Instruct"


# --------------------------------------------------------------------------- strict parameters (no kernel)


def test_unknown_parameter_is_an_error_before_any_kernel_starts(tmp_path, monkeypatch):
    """An undeclared parameter raises ConfigError naming it and the valid ones; papermill is never called."""
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("papermill ran"))
    with pytest.raises(ConfigError) as info:
        notebooks.run_one("03_guardrails", overrides={"case_max_tokns": 8}, out_dir=tmp_path)
    message = str(info.value)
    assert "case_max_tokns" in message and "case_max_tokens" in message and "stream_demo" in message
    assert not list(tmp_path.iterdir()), "nothing is written for a rejected run"


def test_parameters_file_key_no_notebook_declares_is_an_error(tmp_path, monkeypatch):
    """A parameters-file key that no notebook declares is an error naming it."""
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("papermill ran"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: cpu\nconcurency: [1, 2]\n")
    for call in (lambda: notebooks.demo(params_file=bad, out_dir=tmp_path / "r"),
                 lambda: notebooks.run_one("01", params_file=bad, out_dir=tmp_path / "r")):
        with pytest.raises(ConfigError, match="concurency"):
            call()
    assert not (tmp_path / "r").exists()


def test_parameters_file_feeds_each_notebook_only_its_own_keys(tmp_path, monkeypatch):
    """From one flat file each notebook gets exactly the keys it declares."""
    calls = []

    def fake_execute(input_path, output_path, parameters=None, **kwargs):
        calls.append((Path(input_path).stem, parameters))
        nb = nbformat.read(input_path, as_version=4)
        nbformat.write(nb, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    params = tmp_path / "p.yaml"
    params.write_text("profile: cpu\ncase_max_tokens: 4\nconcurrency: [1]\npipeline_instances: 3\n")
    notebooks.run_one("03_guardrails", params_file=params, out_dir=tmp_path / "r")
    name, injected = calls[0]
    assert name == "03_guardrails"
    assert injected == {"case_max_tokens": 4, "report_dir": str(next((tmp_path / "r").glob("2*")).resolve())}


def test_wrong_type_is_an_error():
    """A value of the wrong type (a string where a list is declared) is rejected with the expected type."""
    with pytest.raises(ConfigError, match="concurrency must be list"):
        notebooks.check_parameters("04", {"concurrency": "1,2"})
    with pytest.raises(ConfigError, match="must be int"):
        notebooks.check_parameters("03", {"case_max_tokens": True})
    notebooks.check_parameters("03", {"case_max_tokens": 8, "stream_demo": False})


def test_report_dir_is_reserved_for_the_runner():
    """report_dir is the run folder; a parameters file may not set it."""
    with pytest.raises(ConfigError, match="report_dir"):
        notebooks.split_parameters(notebooks.DEMO_NOTEBOOKS, {"report_dir": "/elsewhere"})


@pytest.mark.parametrize(
    "text, value",
    [("8", 8), ("0.5", 0.5), ("true", True), ("False", False), ("[1, 2, 4]", [1, 2, 4]), ("hello", "hello"),
     ("{a: 1}", {"a": 1}), ("", ""), ("null", None), ("2024-01-01", "2024-01-01"), ("a: b: c", "a: b: c"),
     ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct"), ("'8'", "8"), ("010", 10),
     ("no", "no")],
)
def test_parse_value_without_a_type_reads_yaml_scalars(text, value):
    """A value for an undeclared type is read as YAML 1.2; text YAML cannot read stays a string."""
    assert notebooks.parse_value(text) == value


@pytest.mark.parametrize(
    "text, type_name, value",
    [("Answer briefly: what is Triton?", "str", "Answer briefly: what is Triton?"), ("- a", "str", "- a"),
     ("1.10", "str", "1.10"), ("no", "str", "no"), ("", "str", ""), ("010", "int", 10), (" 8 ", "int", 8),
     ("1e3", "float", 1000.0), ("2", "float", 2.0), ("Yes", "bool", True), ("off", "bool", False),
     ("[1, 010]", "list", [1, 10]), ("{a: no}", "dict", {"a": "no"})],
)
def test_parse_value_reads_the_declared_type(text, type_name, value):
    """A value is read by its declared type: str as typed, int in decimal, bool from the usual words."""
    parsed = notebooks.parse_value(text, type_name)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text, type_name", [("08x", "int"), ("1.5", "int"), ("fast", "float"), ("maybe", "bool"),
                                             ("1,2", "list"), ("[1]", "dict"), ("[1,", "list")])
def test_parse_value_refuses_what_its_type_cannot_read(text, type_name):
    """Text the declared type cannot read is a ConfigError naming the parameter and the type."""
    with pytest.raises(ConfigError, match=f"first_max_tokens must be {type_name}|first_max_tokens is not valid YAML"):
        notebooks.parse_value(text, type_name, name="first_max_tokens")


def test_notebook_names_resolve():
    """A notebook is found by prefix, stem, file name or path; an unknown one lists the choices."""
    path = ROOT / "notebooks" / "03_guardrails.ipynb"
    for name in ("03", "03_guardrails", "03_guardrails.ipynb", str(path)):
        assert notebooks.notebook_path(name) == path
    with pytest.raises(ConfigError, match="04_performance"):
        notebooks.notebook_path("09")


def test_project_path_is_relative_to_the_checkout():
    """Relative path parameters mean the same thing from the command line and from JupyterLab."""
    assert notebooks.project_path("benchmarks/results/h200") == ROOT / "benchmarks" / "results" / "h200"
    assert notebooks.project_path("/abs/x") == Path("/abs/x")


# --------------------------------------------------------------------------- failure path (a kernel, no server)


def _failing_notebook(path: Path) -> Path:
    nb = new_notebook(cells=[
        new_markdown_cell("# A notebook that fails"),
        new_code_cell('divisor: int = 0  # what to divide by', metadata={"tags": ["parameters"]}),
        new_code_cell("print('before the failure')"),
        new_code_cell("ratio = 1 / divisor  # the failing line\nprint(ratio)"),
        new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failing_notebook_still_yields_html_and_names_the_cell(tmp_path):
    """A failing notebook is exported to HTML with the failing cell marked; the KitError names notebook, cell and HTML."""
    source = _failing_notebook(tmp_path / "broken.ipynb")
    run_dir = tmp_path / "run"
    with pytest.raises(KitError) as info:
        notebooks.execute(source, run_dir, {"divisor": 0}, progress=False)
    message = str(info.value)
    assert "broken" in message and "cell" in message
    assert "ratio = 1 / divisor" in message and "ZeroDivisionError" in message
    html_file = run_dir / "broken.html"
    assert html_file.is_file() and str(html_file) in message
    page = html_file.read_text()
    assert "ZeroDivisionError" in page and "before the failure" in page
    assert "An Exception was encountered" in page  # papermill's banner over the failing cell
    executed = nbformat.read(run_dir / "broken.ipynb", as_version=4)
    assert executed.cells[-1].outputs == []  # nothing ran after the failure
    assert not NETWORK_SCRIPT.search(page)
    assert info.value.run.ok is False and info.value.run.html == html_file


def test_failing_run_one_writes_the_index_and_raises(tmp_path, monkeypatch):
    """run_one on a failing notebook still writes the run's index (marked failed) and points latest at it."""
    source = _failing_notebook(tmp_path / "broken.ipynb")
    with pytest.raises(KitError, match="broken"):
        notebooks.run_one(source, overrides={"divisor": 0}, out_dir=tmp_path / "reports", progress=False)
    latest = tmp_path / "reports" / "latest"
    index = (latest / "index.html").read_text()
    assert 'href="broken.html"' in index and "failed" in index
    assert (tmp_path / "reports" / "index.html").is_file()


# --------------------------------------------------------------------------- server lifecycle of the demo (no Triton)


def _fake_server(tmp_path: Path, tag: str | None = None, name: str = "tritonserver") -> subprocess.Popen:
    """A long sleep in its own session, called `tritonserver`, standing in for a server."""
    binary = tmp_path / name
    if not binary.exists():
        binary.symlink_to(Path(sys.executable))
    env = dict(os.environ)
    if tag:
        env[notebooks.RUN_ID_VARIABLE] = tag
    return subprocess.Popen([str(binary), "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)


def _write_state(pid: int) -> None:
    from kit import server as srv

    srv.state_path().parent.mkdir(parents=True, exist_ok=True)
    srv.state_path().write_text(json.dumps({"pid": pid, "http_url": "http://127.0.0.1:9", "grpc_url": "grpc://127.0.0.1:9",
                                            "metrics_url": "http://127.0.0.1:9", "repository": "x", "log": "x"}))


def _gone(proc: subprocess.Popen, timeout: float = 10) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_demo_stops_only_the_server_it_started(tmp_path, monkeypatch):
    """The server recorded during the run is stopped; the one running before the run is left alone."""
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    before = _fake_server(tmp_path)
    started = _fake_server(tmp_path)
    try:
        _write_state(before.pid)
        runner._stop_servers_of_this_run("tag", before.pid, lambda m: None)
        assert not _gone(before, 1), "the server that was already running was stopped"
        _write_state(started.pid)
        runner._stop_servers_of_this_run("tag", before.pid, lambda m: None)
        assert _gone(started), "the server this run started is still running"
        assert before.poll() is None
    finally:
        for proc in (before, started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_demo_stops_a_server_interrupted_before_its_record_was_written(tmp_path, monkeypatch):
    """A server started by this run (tagged through the environment) but never recorded is stopped too."""
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    ours = _fake_server(tmp_path, tag="run-a")
    stub = _fake_server(tmp_path, tag="run-a", name="triton_python_backend_stub")  # outlived its server
    other = _fake_server(tmp_path, tag="run-b")
    try:
        deadline = time.monotonic() + 10
        while len(runner._tagged_sessions("run-a")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runner._tagged_sessions("run-a") == sorted([ours.pid, stub.pid])
        runner._stop_servers_of_this_run("run-a", None, lambda m: None)
        assert _gone(ours) and _gone(stub)
        assert other.poll() is None, "a server of another run was stopped"
    finally:
        for proc in (ours, stub, other):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_demo_stops_its_server_when_a_notebook_fails(tmp_path, monkeypatch):
    """A failing notebook still ends with the run's server stopped, the index written and the error raised."""
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    server = _fake_server(tmp_path)

    def fake_execute(path, run_dir, parameters, **kwargs):
        if path.stem.startswith("02"):
            _write_state(server.pid)  # as notebook 02 records the server it started
        if path.stem.startswith("03"):
            run = notebooks.NotebookRun(path.stem, run_dir / path.name, None, False, 0.1, {}, "boom")
            raise notebooks.NotebookError("notebook 03_guardrails failed in cell 5", run)
        return notebooks.NotebookRun(path.stem, run_dir / path.name, None, True, 0.1, dict(parameters))

    monkeypatch.setattr(runner, "execute", fake_execute)
    try:
        with pytest.raises(KitError, match="03_guardrails"):
            notebooks.demo(out_dir=tmp_path / "reports", progress=False)
        assert _gone(server)
        record = json.loads((tmp_path / "reports" / "latest" / "run.json").read_text())
        assert record["status"] == "failed" and [n["ok"] for n in record["notebooks"]] == [True, True, False]
        assert "04_performance" not in (tmp_path / "reports" / "latest" / "index.html").read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# --------------------------------------------------------------------------- the real thing


@pytest.fixture
def attached_state(server, tmp_path, monkeypatch):
    """Point the notebooks at the session's server: 02 attaches instead of starting a second one."""
    if server.server is None:
        pytest.skip("the session server is external (no process to record); notebook 02 would start its own")
    from kit import server as srv

    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    srv.write_state(server.server)
    return server


TINY_RUN = {
    "concurrency": [1, 2],
    "max_tokens": [8, 24],
    "requests_per_level": 3,
    "compare_concurrency": [1, 2],
    "compare_max_tokens": 8,
    "compare_requests": 2,
    "pa_concurrency": [1],
    "pa_max_tokens": [8],
    "pa_measurement_interval_ms": 1500,
    "case_max_tokens": 8,
    "first_max_tokens": 16,
}


@pytest.mark.notebooks
def test_demo_runs_every_notebook_against_the_session_server(attached_state, tmp_path, monkeypatch):
    """01→04 run with tiny settings against the session server: reports, offline plots, all guard cases pass, an index."""
    server = attached_state
    canary = "hf_CanaryNotebookRun0123456789abcdef"
    monkeypatch.setenv("HUGGINGFACE_HUB_TOKEN", canary)  # a hub token planted in every kernel's environment
    reports = tmp_path / "reports"
    run_dir = notebooks.demo(out_dir=reports, overrides={**TINY_RUN, "repository": str(tmp_path / "repo")},
                             progress=False)
    assert server.ready(), "the demo stopped the session's server"
    assert (reports / "latest").resolve() == run_dir.resolve()
    for name in notebooks.DEMO_NOTEBOOKS:
        assert (run_dir / f"{name}.ipynb").is_file() and (run_dir / f"{name}.html").is_file(), name
    for name in notebooks.DEMO_NOTEBOOKS:
        page = (run_dir / f"{name}.html").read_text()
        assert not NETWORK_SCRIPT.search(page), f"{name} loads a script from the network"
        if name.startswith(("03", "04")):
            assert "Plotly.newPlot" in page, f"{name} has no plotly figure"
            assert page.index("Plotly.newPlot") > page.index("plotly.js v"), f"{name}: plotly.js is not embedded first"
    executed = nbformat.read(run_dir / "02_start_server.ipynb", as_version=4)
    assert "attached to" in json.dumps([c.get("outputs") for c in executed.cells])

    guard = json.loads((run_dir / notebooks.GUARDRAILS_SUMMARY).read_text())
    assert guard["cases"] >= 30 and guard["failed"] == 0 and guard["passed"] == guard["cases"]
    perf = json.loads((run_dir / notebooks.PERFORMANCE_SUMMARY).read_text())
    assert perf["headline"]

    index = (run_dir / "index.html").read_text()
    for name in notebooks.DEMO_NOTEBOOKS:
        assert f'href="{name}.html"' in index
    assert f"{guard['passed']} / {guard['cases']}" in index
    assert "case_max_tokens" in index  # the run's parameters
    assert f'href="{run_dir.name}/index.html"' in (reports / "index.html").read_text()
    artefacts = [p for p in [*reports.rglob("*"), *(tmp_path / "repo").rglob("*")] if p.is_file()]
    assert len(artefacts) > 8
    leaked = [p for p in artefacts if canary.encode() in p.read_bytes()]
    assert not leaked, f"the hub token appears in {leaked}"
