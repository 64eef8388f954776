"""kit.health: the readiness probe, stub counting and the work in flight, on stand-in servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from localhttp import QuietHandler, serving

from kit import health, metrics
from kit.config import DeploymentConfig
from kit.endpoints import free_port
from kit.exceptions import ServerError
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
    assert health.expected_stubs(config) == expected


def test_expected_stubs_of_the_built_repository(tmp_path):
    """The builder's own configs: one vLLM stub, one per pipeline instance, one postprocess stub."""
    files = render(DeploymentConfig.cpu_default(tmp_path, pipeline_instances=3))
    counts = {path.split("/")[0]: health.expected_stubs(text) for path, text in files.items()
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
    assert health.missing_stubs(repo, ready, [_stub(repo, "pipe")] * 2) == {}
    assert "1 of its 2 Python stub processes died" in health.missing_stubs(repo, ready, [_stub(repo, "pipe")])["pipe"]
    assert "gone" in health.missing_stubs(repo, ready, [_stub(repo, "other")])["pipe"]
    assert health.missing_stubs(repo, [{"name": "pipe", "state": "LOADING"}], []) == {}


def test_missing_stubs_does_not_count_a_sibling_folder(tmp_path):
    """A model whose name extends another's (pipe, pipe2) does not lend it its stubs."""
    repo = _repository(tmp_path, 1)
    assert "gone" in health.missing_stubs(repo, [{"name": "pipe", "state": "READY"}], [_stub(repo, "pipe2")])["pipe"]


def test_requests_in_flight_sums_the_gauges(monkeypatch):
    """The drain reads the pipeline's and the engine's gauges; None when the metrics port does not answer."""
    text = ('kit_pipeline_requests_in_flight{model="p"} 2\nvllm:num_requests_running{model="l"} 1\n'
            'vllm:num_requests_waiting{model="l"} 3\nkit_pipeline_waiting_first_token{model="p"} 9\n# HELP x\n')
    monkeypatch.setattr(metrics, "scrape", lambda url, timeout=10.0: metrics.parse(text))
    assert health.requests_in_flight("http://m") == 6

    def no_answer(url, timeout=10.0):
        raise ServerError("no metrics")

    monkeypatch.setattr(metrics, "scrape", no_answer)
    assert health.requests_in_flight("http://m") is None


class _StandIn(QuietHandler):
    """Answers the readiness probe with ``ready`` and the repository index with ``models`` (class attributes)."""

    ready = 200
    models: list[dict] = []

    def do_GET(self):
        self.send_response(self.ready if self.path == health.READY_PATH else 404)
        self.end_headers()

    def do_POST(self):
        body = json.dumps(self.models).encode() if self.path == "/v2/repository/index" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stand_in():
    with serving(_StandIn) as url:
        yield url


def test_readiness_needs_the_probe_and_every_model_ready(stand_in, monkeypatch):
    """Ready only when /v2/health/ready answers 200 and every listed model is READY; otherwise it says what it waits for."""
    monkeypatch.setattr(_StandIn, "models", [{"name": "a", "state": "READY"}, {"name": "b", "state": "LOADING"}])
    look = health.readiness(stand_in)
    assert look.server_ready and not look.ready and look.waiting_for == ["b"] and not look.failed
    monkeypatch.setattr(_StandIn, "models", [{"name": "a", "state": "READY"}])
    assert health.readiness(stand_in).ready
    monkeypatch.setattr(_StandIn, "ready", 503)
    assert not health.readiness(stand_in).ready
    monkeypatch.setattr(_StandIn, "models", [{"name": "a", "state": "UNAVAILABLE", "reason": "bad config"}])
    assert health.readiness(stand_in).failed[0]["reason"] == "bad config"
    monkeypatch.setattr(_StandIn, "models", [{"name": "a", "state": "UNAVAILABLE", "reason": "unloaded"}])
    assert not health.readiness(stand_in).failed  # unloaded on request (explicit model control): not a failure


def test_probe_of_a_closed_port_says_why():
    """Nothing listening: status 0 with the reason, an empty index, and a readiness that waits for the server."""
    url = f"http://127.0.0.1:{free_port()}"
    status, why = health.probe(url + health.READY_PATH, timeout=1)
    assert status == 0 and "refused" in why.lower()
    look = health.readiness(url)
    assert not look.ready and look.models == [] and look.waiting_for == ["server"]


def test_wait_for_service_returns_once_it_answers_and_says_why_it_gave_up(stand_in):
    """A service that answers 200 is waited for; one whose process exited, or that never answers, is a ServerError."""
    health.wait_for_service(stand_in + health.READY_PATH, None, timeout=5, what="the stand-in")
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait()
    with pytest.raises(ServerError, match=r"the stand-in exited with code 3 during start-up; see the log"):
        health.wait_for_service(stand_in + "/nowhere", exited, timeout=5, what="the stand-in",
                                explain=lambda what: f"{what}; see the log")
    with pytest.raises(ServerError, match="the stand-in was not ready after 0s"):
        health.wait_for_service(stand_in + "/nowhere", None, timeout=0.2, what="the stand-in", interval_s=0.1)
