"""The committed notebooks (clean, one documented parameters cell, parameter files) and the whole demo on the real server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from kit import notebooks
from kit import params as kit_params
from kit.notebooks import parameters

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


# --------------------------------------------------------------------------- the real thing


@pytest.fixture
def attached_state(server, tmp_path, monkeypatch):
    """Point the notebooks at the session's server: 02 attaches instead of starting a second one."""
    if server.server is None:
        pytest.skip("the session server is external (no process to record); notebook 02 would start its own")
    from kit.detached import ServerState, write_state

    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    write_state(ServerState.of(server.server))
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
        if name.startswith(("02", "03", "04")):
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
