"""kit.notebooks.runner: a failing notebook still yields its report; the demo stops only the server it started."""

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
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kit import notebooks
from kit.exceptions import KitError
from kit.notebooks import runner

NETWORK_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


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
    from kit.detached import ServerState, write_state
    from kit.endpoints import Endpoints

    write_state(ServerState(pid, Endpoints("127.0.0.1", 9, 9, 9), repository="x", log="x"))


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
