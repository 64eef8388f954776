"""Self-healing, honest health and draining on a supervised server of this module's own.

Stubs are killed and the server is stopped on purpose, so the session server is not used.
Figures (detection and recovery times, drain time, soak figures) are printed for the
record (``pytest -s``). ``KIT_SOAK=1`` runs the chaos soak for 20 minutes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kit import container, health, metrics, processes, repository
from kit import server as srv
from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL, DeploymentConfig
from kit.detached import read_state
from kit.exceptions import InferenceError
from kit.perf.chaos import soak
from kit.supervisor import Supervisor
from tests.conftest import answer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 120  # no request may take longer: the client gives up and the test counts it as hung
SOAK_S = 1200 if os.environ.get("KIT_SOAK") == "1" else 90
GPU_ONLY = ("nv_gpu_", "nv_energy_")


def test_detached_server_is_supervised(tmp_path, tiny_model):
    """`kit serve --detach` runs a supervisor: a killed stub comes back with a new record, `kit stop` ends it all.

    First in the module, so that its server never runs next to the module's own.
    """
    env = {**os.environ, "KIT_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    repo = repository.build(DeploymentConfig.cpu_default(tiny_model, blocking_variant=False), tmp_path / "repo")
    kit = [sys.executable, "-m", "kit"]
    started = subprocess.run([*kit, "serve", "--detach", "--repository", str(repo)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "detached, supervised" in started.stdout
    state_file = tmp_path / "state" / "server.json"
    first = read_state(state_file)
    try:
        assert processes.pid_alive(first.supervisor_pid) and processes.pid_alive(first.pid)
        victim = processes.model_stubs(first.pid, repo, LLM_MODEL)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            state = read_state(state_file)
            if state.pid != first.pid and _health(state) == 200:
                break
            time.sleep(1)
        assert state.pid != first.pid, "the supervisor did not restart the server"
        status = subprocess.run([*kit, "status"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stdout
        assert answer(Client(state.endpoints.grpc_address), "back")
    finally:
        stopped = subprocess.run([*kit, "stop"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "stopped" in stopped.stdout
    assert not state_file.exists()
    assert not processes.pid_alive(first.supervisor_pid)
    assert processes.session_processes(state.pid) == [] and processes.session_processes(first.pid) == []


@pytest.fixture(scope="module")
def healing(tmp_path_factory, tiny_model):
    """A server with two pipeline instances (each test that needs a supervisor starts its own)."""
    config = DeploymentConfig.cpu_default(tiny_model, blocking_variant=False, pipeline_instances=2)
    server = srv.Server(repository.build(config, tmp_path_factory.mktemp("healing") / "model_repository"))
    server.start()
    try:
        yield server
    finally:
        server.stop(drain=False)


def _serving(server) -> None:
    """Restart ``server`` unless it answers: a test must not inherit a fault from the one before."""
    try:
        if server.process is not None and server.process.poll() is None:
            answer(Client(server.endpoints.grpc_address, timeout_s=60), "ready?")
            return
        why = "its process is gone"
    except InferenceError as exc:
        why = str(exc)
    print(f"\nthe module's server does not answer ({why}): restarting it")
    server.restart()


def _health(supervisor) -> int:
    return health.probe(supervisor.health_url, timeout=5)[0]


def _container_check(server) -> int:
    """The container's health check, pointed at this server and its session's stubs."""
    return container.healthcheck(f"{server.endpoints.http_url}/v2/health/ready", repository=server.repository,
                                 stubs=lambda: processes.stub_command_lines(processes.session_processes(server.pid)))


def _request(server, i: int) -> tuple[float, float, str]:
    """One pipeline request (streamed every other time); (start, end, 'ok' or the error)."""
    started = time.monotonic()
    try:
        client = Client(server.endpoints.grpc_address, timeout_s=HANG_S)
        result = client.generate(f"heal {i}", stream=i % 2 == 0, max_tokens=48, sampling={"ignore_eos": True})
        outcome = "ok" if result.text else "empty answer"
    except InferenceError as exc:
        outcome = str(exc)
    return started, time.monotonic(), outcome


def test_every_metric_named_in_deploy_and_docker_is_served(healing):
    """Every metric the manifests, compose files and their docs name exists on the server's metrics port."""
    server = healing
    _request(server, 0)
    served = {sample.name for sample in metrics.scrape(server.endpoints.metrics_url)}
    named = set()
    for path in [*(ROOT / "deploy").rglob("*"), *(ROOT / "docker").rglob("*")]:
        if path.is_file():
            named |= set(re.findall(r"\b(?:nv_[a-z_]+|vllm:[a-z_:]+|kit_[a-z_]+)\b(?![*])", path.read_text()))
    named = {n for n in named if not n.endswith("_") and not n.startswith(GPU_ONLY)}
    assert {"kit_pipeline_waiting_first_token", "kit_pipeline_requests_in_flight"} <= named
    missing = sorted(n for n in named if n not in served and not any(s.startswith(n + "_") for s in served))
    assert missing == [], f"named in deploy/ or docker/ but not served: {missing}"


def test_load_gauges_follow_the_requests(healing):
    """While eight long requests run, the in-flight gauge counts them; afterwards both gauges return to 0.

    The requests do not stream: eight streams' token callbacks in this process starved its scrapes of
    the metrics port on two cores (one scrape took 6.6 s), and a scrape that landed only after the
    streams ended saw none of them in flight."""
    server = healing
    seen = 0.0

    def long_request(i):
        Client(server.endpoints.grpc_address, timeout_s=HANG_S).generate(f"long {i}", stream=False, max_tokens=1500,
                                                                     sampling={"ignore_eos": True})

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(long_request, i) for i in range(8)]
        while not all(f.done() for f in futures):
            seen = max(seen, metrics.total(metrics.scrape(server.endpoints.metrics_url),
                                           "kit_pipeline_requests_in_flight"))
            time.sleep(0.2)
        for f in futures:
            f.result()
    assert seen >= 6, f"the in-flight gauge peaked at {seen} with 8 requests running"
    time.sleep(1.5)  # the gauges are flushed twice a second
    assert health.requests_in_flight(server.endpoints.metrics_url) == 0


@pytest.mark.parametrize("model", [PIPELINE_MODEL, LLM_MODEL])
def test_lost_stub_under_load_is_restored_without_a_person(healing, model):
    """Kill one stub under load: unhealthy at once, restarted by the supervisor, nothing hangs, then all succeed."""
    server = healing
    with Supervisor(server, interval_s=0.5) as supervisor:
        _kill_under_load(server, supervisor, model)


def _kill_under_load(server, supervisor, model: str) -> None:
    assert _health(supervisor) == 200 and _container_check(server) == 0
    before = supervisor.recoveries_total()
    stop = threading.Event()
    outcomes = []

    def load(worker):
        i = 0
        while not stop.is_set():
            if _health(supervisor) != 200:  # like a load balancer: nothing is sent while unhealthy
                time.sleep(0.2)
                continue
            outcomes.append(_request(server, worker * 10_000 + i))
            i += 1

    with ThreadPoolExecutor(6) as pool:
        workers = [pool.submit(load, w) for w in range(6)]
        time.sleep(5)
        victim = processes.model_stubs(server.pid, server.repository, model)[0]
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        unhealthy = None
        while time.monotonic() - killed < 30 and unhealthy is None:
            if _health(supervisor) == 503:
                unhealthy = time.monotonic() - killed
            time.sleep(0.1)
        assert unhealthy is not None, "the supervisor's /health stayed 200 for 30 s after the stub died"
        deadline = time.monotonic() + 900
        while (supervisor.recoveries_total() == before or _health(supervisor) != 200) and time.monotonic() < deadline:
            time.sleep(0.5)
        restored = time.monotonic()
        assert supervisor.recoveries_total() == before + 1
        time.sleep(10)  # load after recovery
        stop.set()
        for w in workers:
            w.result(timeout=HANG_S + 30)
    print(f"\n{model}: stub {victim} killed; unhealthy after {unhealthy:.1f}s, service restored after "
          f"{restored - killed:.1f}s; {len(outcomes)} requests")
    assert _container_check(server) == 0
    for started, ended, outcome in outcomes:
        assert ended - started < HANG_S, f"a request took {ended - started:.0f}s"
        if started > restored or ended < killed:
            assert outcome == "ok", outcome  # before the kill and after recovery: every request succeeds
    after = [o for s, _, o in outcomes if s > restored]
    assert after and all(o == "ok" for o in after)
    recoveries = metrics.scrape(supervisor.health_url.removesuffix("/health"))
    assert metrics.total(recoveries, "kit_model_recoveries_total", model=model) == 1.0


def test_lost_stub_fails_the_container_health_check(healing):
    """The container's health check (compose, Kubernetes) fails while a model lacks a stub, naming it."""
    server = healing  # no supervisor: the check alone is under test
    try:
        victim = processes.model_stubs(server.pid, server.repository, PIPELINE_MODEL)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes.pid_alive(victim) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _container_check(server) == 1
    finally:
        server.restart()
    assert _container_check(server) == 0


@pytest.mark.soak
@pytest.mark.timeout(SOAK_S + 900)
def test_chaos_soak(healing):
    """Mixed traffic, cancellations, disconnects, bad inputs and a killed stub: no failure besides the
    requests in flight on it or on a fault the supervisor mended, nothing hung, resident memory
    within 5 % after warm-up.

    The canary is quick enough (a fault noticed within 51 s) that a request caught in a
    wedged server ends at its restart, well before HANG_S.
    """
    server = healing
    with Supervisor(server, interval_s=0.5, canary_every_s=5, canary_timeout_s=20) as supervisor:
        assert supervisor.detection_s < HANG_S / 2
        report = soak(server, supervisor, duration_s=SOAK_S, kill_at_s=10, concurrency=6,
                      warmup_s=min(60, SOAK_S / 4), hang_s=HANG_S)
    print("\n" + report.summary())
    assert report.requests > 0 and report.restored_at_s is not None and report.recoveries >= 1
    assert report.failures == []
    assert report.hung == 0
    assert report.rss_growth is not None and report.rss_growth < 0.05


def test_stop_during_16_streams_drains_them(healing):
    """SIGTERM during 16 streams: each completes or ends with a clear error within the drain period."""
    server = healing
    _serving(server)
    firsts = threading.Semaphore(0)
    outcomes = {}

    def stream(i):
        started = time.monotonic()
        chunks = 0
        try:
            client = Client(server.endpoints.grpc_address, server.endpoints.http_url, timeout_s=HANG_S,
                            protocol="http" if i % 2 else "grpc")
            for _ in client.stream(f"drain {i}", max_tokens=200, sampling={"ignore_eos": True}):
                chunks += 1
                if chunks == 1:
                    firsts.release()
            outcomes[i] = ("ok", chunks, time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - every way a stream ends is checked below
            outcomes[i] = (f"{type(exc).__name__}: {exc}", chunks, time.monotonic() - started)
            firsts.release()

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for _ in range(16):
        assert firsts.acquire(timeout=HANG_S)
    failed_early = {k: v[0] for k, v in list(outcomes.items()) if v[1] == 0}
    assert not failed_early, f"streams failed before their first token, so nothing was drained: {failed_early}"
    session = server.pid
    stopped = time.monotonic()
    server.stop(drain=True)
    took = time.monotonic() - stopped
    for t in threads:
        t.join(timeout=server.drain_s + 15)
    summary = ", ".join(f"{k}:{v[0][:40]}/{v[1]}" for k, v in sorted(outcomes.items()))
    print(f"\nstop during 16 streams: {took:.1f}s; {summary}")
    assert len(outcomes) == 16, "a stream neither completed nor ended with an error"
    assert took <= server.drain_s + 15
    for outcome, _chunks, _ in outcomes.values():
        assert outcome == "ok" or len(outcome) > 20, outcome
    assert processes.session_processes(session) == []
