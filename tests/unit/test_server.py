"""kit.server's command line (the server itself is exercised by the integration tests)."""

from __future__ import annotations

import pytest

from kit import server as srv
from kit.exceptions import PortInUseError, ServerError


def test_command_sets_the_drain_period(tmp_path):
    """The server's command line carries Triton's exit timeout, the drain period."""
    server = srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path), drain_s=7)
    assert "--exit-timeout-secs=7" in server.command()


def _server(tmp_path, **ports) -> srv.Server:
    return srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path), **ports)


def test_requested_ports_are_kept_and_the_others_chosen(tmp_path):
    server = _server(tmp_path, grpc_port=1234)
    http, grpc, metrics = server.endpoints.ports
    assert grpc == 1234
    assert len({http, grpc, metrics}) == 3


def _losing_ports(server, monkeypatch, losses: int) -> list[tuple[int, int, int]]:
    """Make the first ``losses`` launches of ``server`` find a port taken; return the ports each launch got."""
    launches = []

    def start_once(*, timeout, progress):
        launches.append(server.endpoints.ports)
        if len(launches) <= losses:
            raise PortInUseError("Address already in use")
        return server

    monkeypatch.setattr(server, "_start_once", start_once)
    return launches


def test_start_moves_to_new_ports_when_a_chosen_one_was_taken(tmp_path, monkeypatch):
    server = _server(tmp_path, http_port=4321)
    launches = _losing_ports(server, monkeypatch, losses=srv.PORT_ATTEMPTS - 1)
    assert server.start() is server
    assert len(launches) == srv.PORT_ATTEMPTS
    assert all(ports[0] == 4321 for ports in launches)  # the caller's port never changes
    assert len({ports[1:] for ports in launches}) == srv.PORT_ATTEMPTS


def test_start_gives_up_after_its_attempts(tmp_path, monkeypatch):
    server = _server(tmp_path)
    launches = _losing_ports(server, monkeypatch, losses=srv.PORT_ATTEMPTS)
    with pytest.raises(ServerError, match="already in use"):
        server.start()
    assert len(launches) == srv.PORT_ATTEMPTS


def test_start_never_changes_ports_the_caller_chose(tmp_path, monkeypatch):
    server = _server(tmp_path, http_port=4321, grpc_port=4322, metrics_port=4323)
    launches = _losing_ports(server, monkeypatch, losses=1)
    with pytest.raises(ServerError, match="already in use"):
        server.start()
    assert launches == [(4321, 4322, 4323)]


def test_a_failed_test_report_finds_its_servers_and_their_log_tail(tmp_path):
    """The failure hook finds a test's servers (bare or behind the session's handle) and reads their log's end."""
    from types import SimpleNamespace

    from tests.conftest import ServerHandle, _servers, log_tail, stub_stacks

    bare = _server(tmp_path, http_port=1, grpc_port=2, metrics_port=3)
    bare.log_file = tmp_path / "bare.log"
    bare.log_file.write_text("".join(f"line {i}\n" for i in range(500)))
    handled = _server(tmp_path, http_port=4, grpc_port=5, metrics_port=6)
    handled.log_file = tmp_path / "never-written.log"
    item = SimpleNamespace(funcargs={"healing": bare, "other": 7,
                                     "server": ServerHandle("http://h:1", "h:2", "http://h:3", None, handled)})
    assert _servers(item) == [bare]  # a server that wrote no log has nothing to show
    assert stub_stacks(bare) == ""  # not running: no stubs to ask
    assert log_tail(bare.log_file, lines=3) == "line 497\nline 498\nline 499"


@pytest.mark.parametrize("extra, expected", [
    ((), False),
    (("--model-control-mode=explicit", "--load-model=vllm_opt"), True),
    (("--model-control-mode", "explicit"), True),
    (("--model-control-mode=explicit", "--model-control-mode=none"), False),  # Triton takes the last
    (("--model-control-mode=poll",), False),
])
def test_explicit_model_control_is_recognised(tmp_path, extra, expected):
    assert srv.Server(tmp_path, extra_args=extra).loads_on_request is expected
