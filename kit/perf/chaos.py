"""Chaos soak: mixed traffic, cancellations, disconnects, bad inputs and one killed stub.

:func:`soak` drives a supervised server (:class:`kit.supervisor.Supervisor`) for a while
with ``concurrency`` workers, each looping over a random mix of

* streaming and non-streaming pipeline requests (gRPC and HTTP),
* gRPC streams cancelled after their first token,
* HTTP streams whose client drops the connection mid-stream,
* bad inputs (a negative ``max_tokens``, sampling parameters that are not JSON), which
  must be refused with a clear error,

and kills one pipeline stub at ``kill_at_s``. Like a load balancer, a worker sends nothing
while the supervisor's ``/health`` says unhealthy. Every request is bounded
(``hang_s``): one that has not ended by then counts as hung.

A failure is a request that ended with an error it should not have. The requests in flight
when the stub was killed (started before the supervisor restored service, ended after the
kill) are expected to fail and are counted apart. So are those ended by a *fault*: a restart
the soak did not cause (the server process died, or stopped answering the supervisor's canary
requests; the README's Troubleshooting lists what Triton 2.51 did in the soak). A request
counts as ended by a fault when it started before the fault's restart ended and ended at most
:attr:`~kit.supervisor.Supervisor.detection_s` before that restart began. Faults are listed in
the report: the soak shows that the server heals, not that it never fails.

Resident memory (all processes of the server's session, MiB) is read ``warmup_s`` after
service was restored (or after the start) and again at the end; after a recovery the soak
runs on for at least ``2 * warmup_s``, so that the two readings are that far apart.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kit.client import Client
from kit.config import PIPELINE_MODEL
from kit.exceptions import InferenceError
from kit.health import probe
from kit.processes import model_stubs, session_processes
from kit.server import Server

KINDS = ("stream", "generate", "http_stream", "cancel", "disconnect", "bad_input")
WEIGHTS = (35, 20, 10, 15, 10, 10)


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class SoakReport:
    """What a soak saw; times are seconds since its start, memory in MiB."""

    duration_s: float
    requests: int = 0
    ok: int = 0
    lost_with_stub: int = 0
    lost_with_fault: int = 0
    faults: list[str] = field(default_factory=list)  # restarts the soak did not cause: when, and why
    failures: list[str] = field(default_factory=list)
    hung: int = 0
    killed_pid: int | None = None
    killed_at_s: float | None = None
    restored_at_s: float | None = None
    recoveries: float = 0
    rss_after_warmup_mib: float | None = None
    rss_end_mib: float | None = None
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def rss_growth(self) -> float | None:
        if not self.rss_after_warmup_mib or self.rss_end_mib is None:
            return None
        return self.rss_end_mib / self.rss_after_warmup_mib - 1

    def summary(self) -> str:
        growth = f"{self.rss_growth:+.1%}" if self.rss_growth is not None else "n/a"
        recovery = (f"{self.restored_at_s - self.killed_at_s:.1f}s"
                    if self.restored_at_s is not None and self.killed_at_s is not None else "n/a")
        return (f"soak {self.duration_s:.0f}s: {self.requests} requests ({self.by_kind}), ok {self.ok}, "
                f"lost with the killed stub {self.lost_with_stub}, failures {len(self.failures)}, hung {self.hung}; "
                f"faults {self.faults or 'none'} ({self.lost_with_fault} requests lost with them); "
                f"stub {self.killed_pid} killed at {self.killed_at_s}s, service restored after {recovery} "
                f"({self.recoveries:.0f} recoveries); RSS after warm-up {self.rss_after_warmup_mib} MiB, "
                f"at the end {self.rss_end_mib} MiB ({growth})")


def session_rss_mib(server: Server) -> float:
    """Resident memory of every process of the server's session, MiB."""
    import psutil

    total = 0
    for pid in session_processes(server.pid):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


def _healthy(url: str) -> bool:
    return probe(url, timeout=5)[0] == 200


def _disconnect(server: Server, rng: random.Random) -> None:
    url = urllib.parse.urlparse(server.endpoints.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        body = json.dumps({"text_input": "drop me", "max_tokens": 400, "stream": True,
                           "sampling_parameters": json.dumps({"ignore_eos": True})})
        conn.request("POST", f"/v2/models/{PIPELINE_MODEL}/generate_stream", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise InferenceError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
        for _ in range(rng.randint(1, 5)):
            if not resp.readline():
                break
    finally:
        if conn.sock is not None:
            conn.sock.close()  # gone without a word
        conn.close()


def _cancel(server: Server) -> None:
    import tritonclient.grpc as grpcclient

    from kit.client import grpc_inputs, request_inputs

    got = threading.Event()
    errors: list[str] = []
    client = grpcclient.InferenceServerClient(server.endpoints.grpc_address)
    try:
        client.start_stream(callback=lambda result, error: (errors.append(error.message()) if error else None,
                                                            got.set()))
        inputs = request_inputs(PIPELINE_MODEL, "cancel me", stream=True, max_tokens=400,
                                sampling={"ignore_eos": True})
        client.async_stream_infer(PIPELINE_MODEL, grpc_inputs(inputs))
        if not got.wait(120):
            raise InferenceError("no first token within 120s")
        if errors:
            raise InferenceError(errors[0])
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()


def _one(server: Server, kind: str, rng: random.Random, hang_s: float) -> None:
    grpc = Client(server.endpoints.grpc_address, server.endpoints.http_url, timeout_s=hang_s)
    http_client = Client(server.endpoints.grpc_address, server.endpoints.http_url, protocol="http", timeout_s=hang_s)
    tokens = rng.randint(4, 64)
    if kind == "stream":
        result = grpc.generate(f"soak {rng.random()}", stream=True, max_tokens=tokens, sampling={"ignore_eos": True})
    elif kind == "generate":
        result = grpc.generate(f"soak {rng.random()}", max_tokens=tokens, sampling={"ignore_eos": True})
    elif kind == "http_stream":
        result = http_client.generate(f"soak {rng.random()}", stream=True, max_tokens=tokens,
                                      sampling={"ignore_eos": True})
    elif kind == "cancel":
        return _cancel(server)
    elif kind == "disconnect":
        return _disconnect(server, rng)
    else:  # bad input: must be refused with a message that names the problem
        bad = rng.choice(["max_tokens", "temperature"])
        try:
            if bad == "max_tokens":
                grpc.generate("bad", max_tokens=-5)
            else:
                grpc.generate("bad", max_tokens=4, sampling={"temperature": "hot"})
        except InferenceError as exc:
            if bad in str(exc):  # refused, naming what to fix
                return None
            raise
        raise InferenceError(f"bad input ({bad}) was accepted")
    if not result.text:
        raise InferenceError("empty answer")
    return None


def soak(
    server: Server,
    supervisor,
    *,
    duration_s: float,
    kill_at_s: float | None,
    concurrency: int = 8,
    warmup_s: float = 30.0,
    hang_s: float = 180.0,
    seed: int = 0,
    log=print,
) -> SoakReport:
    """Run the soak against a started, supervised ``server``; see the module docstring."""
    report = SoakReport(duration_s=duration_s)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    stop_at = [t0 + duration_s]  # pushed back after a recovery, so that memory is measured over a real span
    recoveries_before = supervisor.recoveries_total()
    history_before = len(supervisor.history)

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < stop_at[0]:
            if not _healthy(supervisor.health_url):
                time.sleep(0.5)
                continue
            kind = rng.choices(KINDS, WEIGHTS)[0]
            started = time.monotonic()
            try:
                _one(server, kind, rng, hang_s)
                outcome = Outcome(kind, started, time.monotonic(), True)
            except Exception as exc:  # noqa: BLE001 - every way a request can end is recorded
                outcome = Outcome(kind, started, time.monotonic(), False, f"{type(exc).__name__}: {exc}"[:300])
            with lock:
                outcomes.append(outcome)

    def chaos() -> None:
        if kill_at_s is not None:
            time.sleep(max(0.0, t0 + kill_at_s - time.monotonic()))
            stubs = model_stubs(server.pid, server.repository, PIPELINE_MODEL)
            if stubs:
                report.killed_pid = stubs[0]
                report.killed_at_s = round(time.monotonic() - t0, 1)
                os.kill(stubs[0], signal.SIGKILL)
                log(f"chaos: killed pipeline stub {stubs[0]} at {report.killed_at_s}s")
                deadline = time.monotonic() + 900
                stop_at[0] = max(stop_at[0], deadline)  # the workers wait for the recovery, however long
                while supervisor.recoveries_total() == recoveries_before and time.monotonic() < deadline:
                    time.sleep(0.2)
                while not _healthy(supervisor.health_url) and time.monotonic() < deadline:
                    time.sleep(0.2)
                report.restored_at_s = round(time.monotonic() - t0, 1)
                log(f"chaos: service restored at {report.restored_at_s}s")
                stop_at[0] = max(t0 + duration_s, time.monotonic() + 2 * warmup_s)
        # memory: after warm-up on the server that serves from here on, then at the end
        time.sleep(warmup_s)
        report.rss_after_warmup_mib = session_rss_mib(server)
        log(f"chaos: RSS after warm-up {report.rss_after_warmup_mib} MiB")

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker, i) for i in range(concurrency)]
        for future in futures:
            future.result()  # every request is bounded by hang_s; the loop by stop_at
    chaos_thread.join(timeout=hang_s)
    report.duration_s = round(time.monotonic() - t0, 1)
    report.rss_end_mib = session_rss_mib(server)
    report.recoveries = supervisor.recoveries_total() - recoveries_before

    return tally(report, outcomes, t0=t0, restarts=supervisor.history[history_before:],
                 detection_s=supervisor.detection_s, hang_s=hang_s)


def tally(report: SoakReport, outcomes: list[Outcome], *, t0: float, restarts: list, detection_s: float,
          hang_s: float) -> SoakReport:
    """Count ``outcomes`` into ``report`` (see the module docstring for what is lost, a fault or a failure).

    ``restarts`` are the supervisor's ``(started, ended, what was lost)`` during the soak, in
    monotonic seconds like the outcomes' times; the first one to end after the stub was killed
    is the soak's own (it may seem to start before: the kill's time is rounded), every other one
    is a fault.
    """
    kill = t0 + report.killed_at_s if report.killed_at_s is not None else None
    restored = t0 + report.restored_at_s if report.restored_at_s is not None else None
    planned = next((r for r in restarts if kill is not None and r[1] >= kill), None)
    faults = [r for r in restarts if r is not planned]
    report.faults = [f"{began - t0:.1f}s: {'; '.join(f'{k}: {v}' for k, v in lost.items())}"[:300]
                     for began, _, lost in faults]

    def ended_by_fault(outcome: Outcome) -> bool:
        return any(began - detection_s <= outcome.ended and outcome.started <= ended for began, ended, _ in faults)

    for outcome in outcomes:
        report.requests += 1
        report.by_kind[outcome.kind] = report.by_kind.get(outcome.kind, 0) + 1
        if outcome.ended - outcome.started >= hang_s:
            report.hung += 1
        if outcome.ok:
            report.ok += 1
        elif kill is not None and outcome.ended >= kill and (restored is None or outcome.started <= restored):
            report.lost_with_stub += 1
        elif ended_by_fault(outcome):
            report.lost_with_fault += 1
        else:
            report.failures.append(f"{outcome.kind} at {outcome.started - t0:.1f}s: {outcome.error}")
    return report
