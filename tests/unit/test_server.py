"""kit.server's pure helpers (the server itself is exercised by the integration tests)."""

from __future__ import annotations

import pytest

from kit import server as srv
from kit.config import DeploymentConfig
from kit.repository import render


@pytest.mark.parametrize("config,expected", [
    ('backend: "python"\n', 1),                                                       # no group: one instance
    ("instance_group [ { count: 8 kind: KIND_CPU } ]", 8),
    ("instance_group [ { count: 1 kind: KIND_MODEL } ]", 1),
    ("instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_CPU } ]", 3),
    ("instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] } ]", 2),
    ("instance_group [ { count: 1 kind: KIND_GPU } ]", None),                         # one per visible GPU
])
def test_expected_stubs(config, expected):
    assert srv.expected_stubs(config) == expected


def test_expected_stubs_of_the_built_repository(tmp_path):
    """The builder's own configs: one vLLM stub, one per pipeline instance, one postprocess stub."""
    files = render(DeploymentConfig.cpu_default(tmp_path, pipeline_instances=3))
    counts = {path.split("/")[0]: srv.expected_stubs(text) for path, text in files.items()
              if path.endswith("config.pbtxt")}
    assert counts["llama3-8b-instruct"] == 1
    assert counts["llama_bls_ensemble"] == 3
    assert counts["llama_postprocess"] >= 1


def _repository(tmp_path, instances: int):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "config.pbtxt").write_text(f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]")
    return tmp_path


def _stub(repo, model: str) -> str:
    return f"/x/triton_python_backend_stub {repo}/{model}/1/model.py kit_shm 16777216 8388608 1 /x/python"


def test_missing_stubs_counts_against_the_config(tmp_path):
    """A READY model with fewer stubs than its config asks for is named with what it lost; others are not."""
    repo = _repository(tmp_path, 2)
    ready = [{"name": "pipe", "state": "READY"}]
    assert srv.missing_stubs(repo, ready, [_stub(repo, "pipe")] * 2) == {}
    assert "1 of its 2 Python stub processes died" in srv.missing_stubs(repo, ready, [_stub(repo, "pipe")])["pipe"]
    assert "gone" in srv.missing_stubs(repo, ready, [_stub(repo, "other")])["pipe"]
    assert srv.missing_stubs(repo, [{"name": "pipe", "state": "LOADING"}], []) == {}


def test_missing_stubs_does_not_count_a_sibling_folder(tmp_path):
    """A model whose name extends another's (pipe, pipe2) does not lend it its stubs."""
    repo = _repository(tmp_path, 1)
    assert "gone" in srv.missing_stubs(repo, [{"name": "pipe", "state": "READY"}], [_stub(repo, "pipe2")])["pipe"]


def test_requests_in_flight_sums_the_gauges(monkeypatch):
    """The drain reads the pipeline's and the engine's gauges; None when the metrics port does not answer."""
    text = ('kit_pipeline_requests_in_flight{model="p"} 2\nvllm:num_requests_running{model="l"} 1\n'
            'vllm:num_requests_waiting{model="l"} 3\nkit_pipeline_waiting_first_token{model="p"} 9\n# HELP x\n')
    monkeypatch.setattr(srv, "_get", lambda url, timeout=2.0: (200, text.encode()))
    assert srv.requests_in_flight("http://m") == 6
    monkeypatch.setattr(srv, "_get", lambda url, timeout=2.0: (0, b""))
    assert srv.requests_in_flight("http://m") is None


def test_command_sets_the_drain_period(tmp_path):
    """The server's command line carries Triton's exit timeout, the drain period."""
    server = srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path), drain_s=7)
    assert "--exit-timeout-secs=7" in server.command()
