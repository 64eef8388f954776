"""Faults and secrets on a server of this module's own (it is killed on purpose)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from kit import aborts, launcher, processes, repository
from kit import server as srv
from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL, POSTPROCESS_MODEL, DeploymentConfig
from kit.detached import ServerState, read_state, restart_detached, status, stop_detached, write_state
from kit.exceptions import InferenceError
from kit.health import readiness
from kit.paths import state_path
from tests.conftest import NUMERIC_MODEL, add_numeric_model, answer

pytestmark = pytest.mark.integration

CANARY = "hf_CanaryFaultTest0123456789abcdef"


@pytest.fixture(scope="module")
def detached(tmp_path_factory, tiny_model):
    """A detached server (state in a temporary KIT_STATE_DIR) started with a canary token in the environment."""
    state_dir = tmp_path_factory.mktemp("state")
    env = {"KIT_STATE_DIR": str(state_dir), "HUGGINGFACE_HUB_TOKEN": CANARY}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    repo = repository.build(DeploymentConfig.cpu_default(tiny_model, blocking_variant=False, pipeline_instances=2),
                            tmp_path_factory.mktemp("faults") / "model_repository")
    server = srv.Server(repo)
    server.start()
    write_state(ServerState.of(server))
    try:
        yield server
    finally:
        stop_detached()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_token_is_in_no_process_log_or_artefact(detached):
    """The hub token never reaches the server's processes, their command lines, the log or the repository."""
    client = Client(detached.endpoints.grpc_address)
    assert answer(client, "hello")
    for pid in processes.session_processes(detached.pid):
        assert not any(CANARY in line for line in processes.environment(pid) or ())
        assert CANARY not in (processes.command_line(pid) or "")
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert CANARY not in listing
    assert CANARY not in detached.log_file.read_text(errors="replace")
    for path in detached.repository.rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text(errors="replace")
    assert CANARY not in state_path().read_text()


def test_default_bind_is_loopback(detached):
    """Without --host, every endpoint binds 127.0.0.1 only."""
    command = " ".join(detached.command())
    for flag in ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"):
        assert flag in command


def test_stubs_write_their_python_stacks_to_the_log_on_request(detached):
    """STACKS_SIGNAL makes every stub write its threads' stacks to the server log, and the server serves on."""
    from tests.conftest import stub_stacks

    stubs = [pid for pid in processes.session_processes(detached.pid) if processes.stub_command_lines([pid])]
    stacks = stub_stacks(detached)
    assert len(stubs) == 4  # the LLM, the postprocessor and the pipeline's two instances
    assert stacks.count("Current thread") + stacks.count("Thread 0x") >= 2 * len(stubs)
    assert "vllm-engine-loop" in stacks or "run_forever" in stacks  # the vLLM backend's event loop thread
    assert all(processes.pid_alive(pid) for pid in stubs)
    assert answer(Client(detached.endpoints.grpc_address), "still serving")


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while processes.pid_alive(pid) and time.monotonic() < deadline:  # a zombie counts as dead
        time.sleep(0.1)


def test_status_reports_dead_stubs_and_restart_recovers(detached):
    """Killing the vLLM stub and one of two pipeline stubs makes `kit status` say NOT READY with
    both reasons and the log's error line; a restart serves again."""
    assert status().ready
    stubs = processes.model_stubs(detached.pid, detached.repository, LLM_MODEL)
    assert len(stubs) == 1, f"expected one stub process for the vLLM model, found {stubs}"
    pipeline_stubs = processes.model_stubs(detached.pid, detached.repository, PIPELINE_MODEL)
    assert len(pipeline_stubs) == 2, f"expected two pipeline stubs, found {pipeline_stubs}"
    _kill(stubs[0])
    # a live pipeline instance meets the dead LLM stub and logs it (a dead pipeline instance could not)
    with pytest.raises(InferenceError, match="not healthy|Stub"):
        Client(detached.endpoints.grpc_address).generate("hello again", max_tokens=4)
    _kill(pipeline_stubs[0])
    deadline = time.monotonic() + 15  # the server writes the pipeline's log line asynchronously
    while True:
        report = status()
        if any("not healthy" in line for line in report.errors) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not report.ready
    assert "NOT READY" in report.message and LLM_MODEL in report.message
    reasons = {m["name"]: m.get("reason", "") for m in report.models}
    assert "stub processes are gone" in reasons[LLM_MODEL]
    assert "1 of its 2 Python stub processes died" in reasons[PIPELINE_MODEL]
    assert any("not healthy" in line for line in report.errors)
    restarted = restart_detached()
    assert status().ready
    assert answer(Client(restarted.endpoints.grpc_address), "back")
    assert restarted.endpoints == detached.endpoints  # clients keep their addresses


def test_stop_leaves_no_process_behind(detached):
    """`kit stop` ends the server, every stub and every vLLM engine process, and frees the ports."""
    import socket

    state = read_state()
    assert stop_detached()
    assert processes.session_processes(state.pid) == []
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections may linger in TIME_WAIT
        sock.bind(("127.0.0.1", state.endpoints.http_port))  # raises only if something still listens there
    assert status().running is False


def test_a_chosen_port_taken_before_the_bind_is_replaced(tmp_path, tiny_model, monkeypatch):
    """Another process binds a port the kit chose before tritonserver does: the server starts on new ports.

    The kernel hands the same ephemeral ports to every process, so between ``free_ports`` and the
    server's bind anyone may take one (seen in this suite once: a gRPC port). The repository holds
    only the postprocess model, to start in seconds.
    """
    built = repository.build(DeploymentConfig.cpu_default(tiny_model, blocking_variant=False), tmp_path / "full")
    repo = tmp_path / "postprocess_only"
    shutil.copytree(built / POSTPROCESS_MODEL, repo / POSTPROCESS_MODEL)
    real = srv.free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = []

        def grpc_port_taken_first(count, host="127.0.0.1"):
            ports = real(count, host)
            if not picks:
                ports[1] = taken  # HTTP, gRPC, metrics
            picks.append(ports)
            return ports

        monkeypatch.setattr(srv, "free_ports", grpc_port_taken_first)
        server = srv.Server(repo)
        assert server.endpoints.grpc_port == taken
        try:
            server.start(timeout=120)
            assert taken not in server.endpoints.ports
            assert len(picks) == 2
            assert readiness(server.endpoints.http_url).ready
            assert srv.PORT_IN_USE in server.log_file.read_bytes()  # the first launch did meet the squatter
        finally:
            server.stop()


def test_explicit_model_control_is_ready_once_the_requested_models_are(tmp_path, tiny_model):
    """Started as NVIDIA's CI starts Triton (explicit model control, one ``--load-model``), the server is ready
    with that model loaded and the other one merely listed, not waited for and not taken for a failure."""
    built = repository.build(DeploymentConfig.cpu_default(tiny_model, blocking_variant=False), tmp_path / "full")
    repo = tmp_path / "explicit"
    shutil.copytree(built / POSTPROCESS_MODEL, repo / POSTPROCESS_MODEL)
    add_numeric_model(repo)
    server = srv.Server(repo, extra_args=["--model-control-mode=explicit", f"--load-model={NUMERIC_MODEL}"])
    try:
        server.start(timeout=120)
        states = {m["name"]: m.get("state") for m in readiness(server.endpoints.http_url).models}
        assert states[NUMERIC_MODEL] == "READY" and states[POSTPROCESS_MODEL] != "READY"
    finally:
        server.stop()


def test_a_killed_servers_shared_memory_is_removed_by_stop(tmp_path):
    """A server whose whole session died by SIGKILL (stubs included) cannot unlink its /dev/shm regions
    (32 MiB each), nor its stubs their pending aborts (kit.aborts); stop() removes both. (A stub
    outliving its server unlinks its regions itself.)"""
    repo = tmp_path / "repo"
    add_numeric_model(repo)
    server = srv.Server(repo)
    try:
        server.start(timeout=120)
        pid = server.process.pid
        assert list(launcher.SHM_DIR.glob(f"{server.shm_prefix}*")), "the running model maps no region?"
        aborts.AbortMailbox(aborts.folder("llm", pid)).post("pending")  # as a pipeline stub would
        os.killpg(pid, signal.SIGKILL)  # the server leads its own session
        server.process.wait(timeout=10)
        assert list(launcher.SHM_DIR.glob(f"{server.shm_prefix}*")), "nothing was left behind to remove"
    finally:
        server.stop()
    assert not list(launcher.SHM_DIR.glob(f"{server.shm_prefix}*"))
    assert not aborts.base_folder(pid).exists()
