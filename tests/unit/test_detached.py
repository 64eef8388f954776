"""kit.detached: the detached server's record, read and written as JSON, and its status without a server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kit import detached
from kit.endpoints import Endpoints
from kit.exceptions import ServerError
from kit.paths import state_path


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))


def _state(**more) -> detached.ServerState:
    return detached.ServerState(4242, Endpoints("127.0.0.1", 8000, 8001, 8002), repository="/r", log="/l.log", **more)


def test_record_round_trips_with_hosts_and_ports():
    """write_state then read_state gives the same record; the file holds host and ports, not URLs."""
    state = _state(supervisor_pid=7, health_port=9100, openai_pid=8, openai_port=9000, openai_workers=2)
    detached.write_state(state)
    assert detached.read_state() == state
    stored = json.loads(state_path().read_text())
    assert stored["endpoints"] == {"host": "127.0.0.1", "http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
    assert not any("://" in str(value) for value in stored.values())


def test_addresses_give_what_clients_connect_to():
    """The record renders each address once: URLs for HTTP, metrics, OpenAI and /health, host:port for gRPC."""
    shown = _state(health_port=9100, openai_port=9000).addresses()
    assert shown["grpc"] == "127.0.0.1:8001" and shown["http"] == "http://127.0.0.1:8000"
    assert shown["openai"] == "http://127.0.0.1:9000/v1" and shown["health"] == "http://127.0.0.1:9100/health"
    assert "openai" not in _state().addresses() and "health" not in _state().addresses()


@pytest.mark.parametrize("text", [
    "{not json",
    json.dumps({"pid": 1, "http_url": "http://127.0.0.1:8000", "grpc_url": "grpc://127.0.0.1:8001",
                "metrics_url": "http://127.0.0.1:8002", "repository": "/r", "log": "/l"}),     # an older kit's record
    json.dumps([1, 2]),
    json.dumps({"pid": "one", "endpoints": {"host": "h", "http_port": 1, "grpc_port": 2, "metrics_port": 3},
                "repository": "/r", "log": "/l"}),
    json.dumps({"pid": 1, "endpoints": {"host": "h", "http_port": 1, "grpc_port": 2, "metrics_port": 3},
                "repository": "/r", "log": "/l", "colour": "red"}),
])
def test_an_unreadable_record_names_the_fix(text):
    """A damaged or older record is a ServerError that says how to stop its server and remove the file."""
    state_path().parent.mkdir(parents=True)
    state_path().write_text(text)
    with pytest.raises(ServerError, match=r"not a server record this kit can read .*kill -TERM .*rm "):
        detached.read_state()


def test_status_without_a_record_says_how_to_start_one():
    """No record: not running, not ready, and the message names `kit serve --detach`; stop has nothing to do."""
    report = detached.status()
    assert not report.running and not report.ready and "python -m kit serve --detach" in report.message
    assert report.to_dict()["running"] is False
    assert detached.stop_detached() is False


def test_status_of_a_dead_server_points_at_its_log():
    """A record whose process is gone is reported as gone, with the log to read, and no models."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state = detached.ServerState(gone.pid, Endpoints("127.0.0.1", 9, 9, 9), repository="/r", log="/l.log")
    report = detached.status(state)
    assert not report.running and not report.ready and report.models == []
    assert f"server process {gone.pid} is gone; see /l.log" == report.message
    assert report.to_dict()["grpc"] == "127.0.0.1:9"
