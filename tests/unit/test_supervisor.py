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
