"""The OpenAI service as a process beside the server: started, recorded for `kit stop`, and stopped whole."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from types import SimpleNamespace

import pytest

from kit.detached import ServerState, stop_detached, write_state
from kit.endpoints import Endpoints, free_port
from kit.exceptions import ServerError
from kit.openai.service import OpenAIService
from kit.paths import state_path
from kit.processes import pid_alive

pytestmark = pytest.mark.integration


def test_kit_stop_ends_the_recorded_openai_service(server, tmp_path, monkeypatch):
    """A detached record with the service: stop_detached ends the service's session and the server's."""
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path))
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    api = OpenAIService(server.grpc_address, log_file=tmp_path / "openai.log").start()
    with urllib.request.urlopen(api.base_url + "/health", timeout=10) as resp:
        assert json.loads(resp.read()) == {"status": "ready"}
    record = ServerState.of(SimpleNamespace(pid=stand_in.pid, endpoints=Endpoints("127.0.0.1", 9, 9, 9),
                                            repository="", log_file=""), api)
    assert record.openai_url == api.url
    write_state(record)
    assert stop_detached()
    assert api.process.wait(timeout=10) is not None and stand_in.wait(timeout=10) is not None
    assert not pid_alive(api.pid) and not state_path().exists()


def test_a_service_without_a_server_says_why(tmp_path):
    """Pointed at a port where no Triton listens, the service never reports ready and the error names the log."""
    api = OpenAIService(f"127.0.0.1:{free_port()}", log_file=tmp_path / "openai.log")
    with pytest.raises(ServerError, match="not ready after"):
        api.start(timeout=8)
    assert api.process is None
