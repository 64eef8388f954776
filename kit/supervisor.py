"""Self-healing for ``kit serve``: notice a lost stub or a dead server within seconds, restore it.

Triton 2.51 keeps a model READY after one of its Python stub processes died and keeps
routing requests to it; they fail ("Stub process ... is not healthy") or never end.
What was measured on the CPU default (tiny model, two pipeline instances):

* a reload under ``--model-control-mode=explicit`` (``POST /v2/repository/models/<m>/load``)
  started new instances in 13 s but never unloaded the old ones: Triton waits for the
  requests in flight on the dead stub, which never finish, and those requests hung for
  more than 200 s;
* a restart of the whole server on the same ports ends every request in flight at once
  (the client's connection closes) and serves again once the models have loaded.

So :class:`Supervisor` restarts. It polls every :attr:`~Supervisor.interval_s` seconds:
the server process, the repository index, and each model's live stubs against its
config's instance count (:func:`kit.health.missing_stubs`, the check ``kit status`` runs).
A server can also stop answering while all of that looks fine: a lock cycle inside Triton
2.51's Python backend stub leaves the pipeline's requests unanswered, every process alive and
the server ready (README, Troubleshooting); the kit's chaos soak saw such a wedge last for
minutes after a burst of cancelled streams. So every
:attr:`~Supervisor.canary_every_s` seconds it also sends a one-token request through the
guarded pipeline over gRPC (:func:`canary`); after :attr:`~Supervisor.canary_misses` in a row
go unanswered for :attr:`~Supervisor.canary_timeout_s` seconds, it restarts too. It serves on
its own port

* ``/health``: 200 while the server is ready and every stub lives, else 503, with a
  JSON body saying why (what ``kit status`` says);
* ``/metrics``: ``kit_model_recoveries_total{model}`` (restarts it made, by the model
  that lost a stub, ``server`` when the process died or stopped answering), ``kit_server_healthy`` and
  ``kit_recovery_seconds`` (the last restart's duration, s), in Prometheus' text format.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from kit.endpoints import connect_host
from kit.health import lost_stubs, readiness
from kit.server import READY_TIMEOUT_S, Server

INTERVAL_S = 1.0
CANARY_EVERY_S = 15.0
CANARY_TIMEOUT_S = 60.0  # a one-token answer; far above its time on a loaded 2-core machine (< 2 s)
CANARY_MISSES = 2
# Problems of the whole server that a restart mends (a server that is starting is left alone).
RESTART_REASONS = ("tritonserver is not running", "not answering")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # probes every few seconds: no access log
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):  # one slow scraper must not block a probe
        threading.Thread(target=super().process_request, args=(request, client_address), daemon=True).start()


def check(server: Server) -> dict[str, str]:
    """What is wrong with ``server`` now: ``{what: why}``, empty when healthy.

    ``what`` is a model name, or ``server`` for the process and its readiness.
    """
    if server.process is None or server.process.poll() is not None:
        code = server.process.poll() if server.process else None
        return {"server": f"tritonserver is not running (exit code {code})"}
    look = readiness(server.endpoints.http_url)
    problems = lost_stubs(server.pid, server.repository, look.models)
    if not problems and not look.ready:
        problems["server"] = "not ready: " + (", ".join(f"{m['name']} {m.get('state')}" for m in look.models)
                                              or "no answer")
    return problems


def canary(server: Server, timeout_s: float) -> str | None:
    """One one-token request through the guarded pipeline over gRPC: None when answered, else why not."""
    from kit.client import Client

    try:
        Client(server.endpoints.grpc_address, timeout_s=timeout_s).generate("ping", max_tokens=1)
    except Exception as exc:  # noqa: BLE001 - any way the request fails counts as a miss
        return f"{type(exc).__name__}: {exc}"
    return None


class Supervisor:
    """Watches a started :class:`~kit.server.Server` and restarts it when a stub or the server is lost.

    >>> with Supervisor(server.start(), port=9100):   # doctest: +SKIP
    ...     ...   # curl localhost:9100/health, /metrics
    """

    def __init__(
        self,
        server: Server,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval_s: float = INTERVAL_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
        log: Callable[[str], None] = print,
        on_state_change: Callable[[Server], None] | None = None,
        canary_every_s: float | None = CANARY_EVERY_S,
        canary_timeout_s: float = CANARY_TIMEOUT_S,
        canary_misses: int = CANARY_MISSES,
        probe: Callable[[Server, float], str | None] = canary,
    ):
        self.server = server
        self.interval_s = interval_s
        self.canary_every_s = canary_every_s  # None: no canary requests
        self.canary_timeout_s = canary_timeout_s
        self.canary_misses = canary_misses
        self.probe = probe
        self._unanswered: str | None = None  # set by the canary thread, taken by the watch loop
        self.history: list[tuple[float, float, dict[str, str]]] = []  # (started, ended, what was lost) per restart
        self.ready_timeout_s = ready_timeout_s
        self.log = log
        self.on_state_change = on_state_change
        self.registry = CollectorRegistry()
        self.recoveries = Counter("kit_model_recoveries", "Server restarts made to restore a model that lost a stub "
                                  "(model=server when the server process itself was lost)", ["model"],
                                  registry=self.registry)
        self.healthy = Gauge("kit_server_healthy", "1 while the server is ready and every stub lives",
                             registry=self.registry)
        self.recovery_s = Gauge("kit_recovery_seconds", "Duration of the last restart, s", registry=self.registry)
        self.problems: dict[str, str] = {}
        self.recovering = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one restart at a time, never during stop()
        self._metrics_app = make_wsgi_app(self.registry)
        self.http = make_server(host, port, self._app, server_class=_ThreadingWSGIServer, handler_class=_Quiet)
        self.port = self.http.server_port
        self.health_url = f"http://{connect_host(host)}:{self.port}/health"
        self._threads = [threading.Thread(target=self.http.serve_forever, name="kit-health", daemon=True),
                         threading.Thread(target=self._watch, name="kit-supervisor", daemon=True)]
        if canary_every_s:
            self._threads.append(threading.Thread(target=self._canary, name="kit-canary", daemon=True))

    # ---- HTTP
    def _app(self, environ, start_response):
        if environ.get("PATH_INFO") == "/health":
            ok = not self.problems and not self.recovering
            body = json.dumps({"healthy": ok, "recovering": self.recovering, "problems": self.problems}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return self._metrics_app(environ, start_response)

    # ---- watching
    def start(self) -> "Supervisor":
        self.problems = check(self.server)
        self.healthy.set(0 if self.problems else 1)
        for thread in self._threads:
            thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._stop.is_set():
                    return
                problems = check(self.server)
                if self._unanswered is not None:
                    problems.setdefault("server", self._unanswered)
                    self._unanswered = None
                self.problems = problems
                self.healthy.set(0 if problems else 1)
                lost = {k: v for k, v in problems.items() if k != "server" or v.startswith(RESTART_REASONS)}
                if lost:
                    self._recover(lost)

    def _canary(self) -> None:
        """Send :func:`canary` requests; report a server that leaves :attr:`canary_misses` in a row unanswered."""
        misses = 0
        while not self._stop.wait(self.canary_every_s):
            pid = self.server.pid
            if self.recovering or self.problems:
                misses = 0  # a known problem, or a restart: the watch loop deals with it
                continue
            why = self.probe(self.server, self.canary_timeout_s)
            if why is None or self.server.pid != pid or self._stop.is_set():
                misses = 0  # answered, or the server was restarted meanwhile
                continue
            misses += 1
            self.log(f"supervisor: canary request {misses} of {self.canary_misses} unanswered: {why}")
            if misses >= self.canary_misses:
                self._unanswered = f"not answering: {misses} one-token requests in a row failed (last: {why})"
                misses = 0

    def _recover(self, lost: dict[str, str]) -> None:
        for what, why in lost.items():
            self.log(f"supervisor: {what}: {why}; restarting the server on the same ports")
        self.recovering = True
        started = time.monotonic()
        try:
            self.server.restart(timeout=self.ready_timeout_s, progress=lambda _msg: None)
        except Exception as exc:  # noqa: BLE001 - keep watching: the next round tries again
            self.log(f"supervisor: restart failed: {exc}")
            return
        finally:
            self.recovering = False
        took = time.monotonic() - started
        self._unanswered = None  # said of the server that is gone
        self.history.append((started, started + took, dict(lost)))  # monotonic seconds
        for what in lost:
            self.recoveries.labels(model=what).inc()
        self.recovery_s.set(took)
        self.problems = check(self.server)
        self.healthy.set(0 if self.problems else 1)
        self.log(f"supervisor: service restored in {took:.1f}s (pid {self.server.pid})")
        if self.on_state_change is not None:
            self.on_state_change(self.server)

    @property
    def detection_s(self) -> float:
        """The longest a server may go unanswered before the canary has it restarted, s."""
        if not self.canary_every_s:
            return self.interval_s
        return self.canary_misses * (self.canary_every_s + self.canary_timeout_s) + self.interval_s

    def recoveries_total(self) -> float:
        """Restarts made so far, all models together."""
        return sum(s.value for m in self.recoveries.collect() for s in m.samples if s.name.endswith("_total"))

    def stop(self) -> None:
        """Stop watching and serving ``/health``; the server itself is left to its owner."""
        self._stop.set()
        with self._lock:
            pass  # a restart in progress finishes first
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> "Supervisor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
