"""kit.supervisor's watch loop, /health and /metrics, on a stand-in server (the real one: tests/integration)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from kit.endpoints import Endpoints
from kit.supervisor import Supervisor, check


class _Process:
    def __init__(self, code):
        self.code = code

    def poll(self):
        return self.code


class _StandIn:
    """What the supervisor uses of a Server: a process, endpoints, a repository, restart()."""

    def __init__(self, tmp_path: Path):
        self.process = _Process(None)
        self.pid = 1
        self.repository = tmp_path
        self.endpoints = Endpoints("127.0.0.1", 9, 9, 9)  # the discard port: nothing answers
        self.restarts = 0

    def restart(self, **_):
        self.restarts += 1
        self.process = _Process(None)
        return self


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_check_names_a_dead_process_and_an_unready_server(tmp_path):
    """A server whose process exited is 'not running'; one that does not answer is 'not ready'."""
    server = _StandIn(tmp_path)
    assert "not ready" in check(server)["server"]
    server.process = _Process(-9)
    assert "not running (exit code -9)" in check(server)["server"]


def test_supervisor_restarts_a_dead_server_and_counts_it(tmp_path):
    """A lost server process is restarted once, counted under model="server", and /health says why it is unhealthy."""
    server = _StandIn(tmp_path)
    logged = []
    with Supervisor(server, interval_s=0.05, log=logged.append) as supervisor:
        code, body = _get(supervisor.health_url)
        assert code == 503 and "not ready" in json.loads(body)["problems"]["server"]
        server.process = _Process(-9)
        deadline = time.monotonic() + 10
        while server.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert server.restarts == 1  # an unready (not dead) server is not restarted again
        assert supervisor.recoveries_total() == 1
        _, metrics = _get(supervisor.health_url.replace("/health", "/metrics"))
        assert 'kit_model_recoveries_total{model="server"} 1.0' in metrics
        assert "kit_server_healthy 0.0" in metrics
    assert any("restarting the server" in line for line in logged)
    assert any("service restored" in line for line in logged)


def test_supervisor_health_is_200_when_nothing_is_wrong(tmp_path, monkeypatch):
    """/health answers 200 with an empty problem list while check() finds nothing."""
    import kit.supervisor as sup

    monkeypatch.setattr(sup, "check", lambda server: {})
    with Supervisor(SimpleNamespace(), interval_s=0.05) as supervisor:
        code, body = _get(supervisor.health_url)
    assert code == 200 and json.loads(body) == {"healthy": True, "recovering": False, "problems": {}}


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_server_that_stops_answering_is_restarted(tmp_path, monkeypatch):
    """Ready, every stub alive, yet the canary requests go unanswered: after `canary_misses` in a row, a restart."""
    import kit.supervisor as sup

    monkeypatch.setattr(sup, "check", lambda server: {})
    server = _StandIn(tmp_path)
    answers = iter(["TimeoutError: no answer", None, "TimeoutError: no answer", "TimeoutError: no answer"])
    probes = []

    def probe(srv, timeout_s):
        probes.append(timeout_s)
        return next(answers, None)

    logged = []
    with Supervisor(server, interval_s=0.02, canary_every_s=0.02, canary_timeout_s=7, canary_misses=2,
                    probe=probe, log=logged.append) as supervisor:
        assert _wait_for(lambda: server.restarts == 1)
        assert _wait_for(lambda: len(probes) >= 6)  # probing goes on after the restart, which answers
        assert server.restarts == 1  # one miss, an answer, then two misses: one restart
        assert supervisor.recoveries_total() == 1
    assert set(probes) == {7}
    assert any("canary request 1 of 2 unanswered: TimeoutError" in line for line in logged)
    assert any("server: not answering: 2 one-token requests in a row failed" in line for line in logged)


def test_no_canary_while_a_problem_is_known_or_when_turned_off(tmp_path, monkeypatch):
    """An unready server is not probed (the watch loop owns it); canary_every_s=None sends nothing."""
    import kit.supervisor as sup

    probes = []
    monkeypatch.setattr(sup, "check", lambda server: {"server": "not ready: llm LOADING"})
    with Supervisor(_StandIn(tmp_path), interval_s=0.02, canary_every_s=0.02,
                    probe=lambda srv, t: probes.append(t)):
        time.sleep(0.3)
    monkeypatch.setattr(sup, "check", lambda server: {})
    with Supervisor(_StandIn(tmp_path), interval_s=0.02, canary_every_s=None,
                    probe=lambda srv, t: probes.append(t)) as supervisor:
        time.sleep(0.3)
        assert len(supervisor._threads) == 2
    assert probes == []


def test_the_canary_is_one_token_through_the_pipeline(monkeypatch):
    """canary() asks the guarded pipeline (the client's default model) for one token and reports the error text."""
    import kit.client
    import kit.supervisor as sup
    from kit.exceptions import InferenceError

    calls = []

    class FakeClient:
        def __init__(self, address, timeout_s):
            calls.append((address, timeout_s))

        def generate(self, prompt, max_tokens):
            calls.append((prompt, max_tokens))
            if len(calls) > 2:
                raise InferenceError("no answer from llama_bls_ensemble within 5s")

    monkeypatch.setattr(kit.client, "Client", FakeClient)
    server = SimpleNamespace(endpoints=Endpoints("127.0.0.1", 1, 2, 3))
    assert sup.canary(server, 5) is None
    assert calls == [("127.0.0.1:2", 5), ("ping", 1)]
    assert sup.canary(server, 5) == "InferenceError: no answer from llama_bls_ensemble within 5s"
