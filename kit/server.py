"""The real Triton Inference Server: start it, wait for it, drain and stop it.

Where the binary comes from is :mod:`kit.installation`; its command line and environment
are :mod:`kit.launcher`'s (shared with the container); its addresses are
:class:`kit.endpoints.Endpoints`; its readiness is probed by :mod:`kit.health`; its
processes are read by :mod:`kit.processes`; a detached server's record is :mod:`kit.detached`.

A :class:`Server` runs in its own process session, so stopping it also ends
every stub and vLLM engine process it started (vLLM's engine core survives a
plain SIGTERM of the server otherwise).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

from kit import aborts, launcher
from kit.endpoints import Endpoints, connect_host, free_ports
from kit.exceptions import PortInUseError, ServerError
from kit.health import readiness, requests_in_flight
from kit.installation import Installation, find_installation, kit_pythonpath
from kit.launcher import DRAIN_S
from kit.paths import new_log
from kit.processes import kill_session, pid_alive

READY_TIMEOUT_S = 600.0
# A port the kit chose can be taken by another process between the choice and tritonserver's bind
# (free_ports picks outside the kernel's ephemeral range, but another program may bind any port);
# the start then tries new ports.
PORT_ATTEMPTS = 3
PORT_IN_USE = b"already in use"  # Triton's log: "Address already in use" (gRPC, HTTP and metrics alike)


def failure_lines(log_text: str, limit: int = 12) -> list[str]:
    """The last ``limit`` lines of a server log that tell why it failed (errors, tracebacks, unhealthy stubs)."""
    keys = ("error", "failed", "unavailable", "traceback", "exception", "not healthy", "signal (")
    lines = [ln for ln in log_text.splitlines() if any(k in ln.lower() for k in keys)]
    lines = [ln for ln in lines if "NVML" not in ln and "DCGM" not in ln]
    return lines[-limit:]


class Server:
    """A ``tritonserver`` process serving one model repository.

    >>> with Server("build/model_repository") as server:   # doctest: +SKIP
    ...     print(server.endpoints.http_url)
    """

    def __init__(
        self,
        repository: Path | str,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_file: Path | str | None = None,
        installation: Installation | None = None,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        drain_s: int = DRAIN_S,
    ):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} does not exist; build it first (`python -m kit build`)")
        self.host = host
        self.requested_ports = (http_port, grpc_port, metrics_port)
        self.endpoints = self._pick_endpoints()
        self.log_file = Path(log_file) if log_file else new_log("tritonserver")
        self.installation = installation
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.drain_s = drain_s
        self.process: subprocess.Popen | None = None
        self._log_start = 0  # where this launch's lines begin in the log file

    def _pick_endpoints(self) -> Endpoints:
        """The requested ports, and distinct free ones (the kernel's choice) where none was requested."""
        chosen = iter(free_ports(self.requested_ports.count(None), self.host))
        http, grpc, metrics = (port or next(chosen) for port in self.requested_ports)
        return Endpoints(connect_host(self.host), http, grpc, metrics)

    # ---- command line
    def command(self) -> list[str]:
        """The ``tritonserver`` argv (:func:`kit.launcher.command`): this server's ports, addresses and shm names."""
        http = self.endpoints.http_port
        return launcher.command(self.installation.binary, launcher.Launch(
            repository=self.repository,
            http_port=http,
            grpc_port=self.endpoints.grpc_port,
            metrics_port=self.endpoints.metrics_port,
            host=self.host,
            backend_dir=self.installation.backend_dir,
            shm_prefix=self.shm_prefix,
            drain_s=self.drain_s,
            extra_args=tuple(self.extra_args),
        ))

    @property
    def shm_prefix(self) -> str:
        """How the names of this server's shared-memory regions begin (several servers may run at once)."""
        return f"kit{os.getpid()}_{self.endpoints.http_port}_"

    def environment(self) -> dict[str, str]:
        """:func:`kit.launcher.environment` plus what the pip-installed server's stubs need."""
        env = dict(os.environ)
        env.update(self.installation.env)
        return launcher.environment(
            env,
            KIT_PYTHONPATH=os.pathsep.join(kit_pythonpath()),
            # The stub ignores PYTHONPATH, but the worker processes vLLM spawns with the
            # base interpreter honour it: that is how they find the virtual environment.
            PYTHONPATH=os.pathsep.join([*kit_pythonpath(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            **self.extra_env,
        )

    # ---- lifecycle
    def start(self, *, timeout: float = READY_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> "Server":
        """Launch ``tritonserver`` and wait until it and every model are ready.

        When a port the kit chose was taken by another process before the server bound it,
        the server is started again on new ones (at most :data:`PORT_ATTEMPTS` launches);
        ports the caller asked for are never changed. Raises :class:`ServerError` with the
        server's own error lines.
        """
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._start_once(timeout=timeout, progress=progress)
            except PortInUseError:
                if attempt == PORT_ATTEMPTS or None not in self.requested_ports:
                    raise
                self.endpoints = self._pick_endpoints()
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, *, timeout: float, progress: Callable[[str], None] | None) -> "Server":
        if self.installation is None:
            self.installation = find_installation()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        log = open(self.log_file, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self.wait_ready(timeout=timeout, progress=progress)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def loads_on_request(self) -> bool:
        """Whether ``extra_args`` start Triton with ``--model-control-mode=explicit``.

        Triton then loads only the ``--load-model`` models at start-up (NVIDIA's vLLM-backend CI
        starts its servers so) and the others on a load request, so "every model READY" never comes.
        """
        mode = None
        for i, arg in enumerate(self.extra_args):
            if arg.startswith("--model-control-mode="):
                mode = arg.split("=", 1)[1]
            elif arg == "--model-control-mode" and i + 1 < len(self.extra_args):
                mode = self.extra_args[i + 1]
        return mode == "explicit"

    def wait_ready(self, *, timeout: float = READY_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> None:
        """Block until the server and every model are ready; raise with the server's own error lines.

        With :attr:`loads_on_request`, "every model" is every model Triton loaded (its own
        ``/v2/health/ready``).
        """
        progress = progress or _default_progress()
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            code = self.process.poll() if self.process else None
            if self._port_taken():
                # tritonserver exits when gRPC cannot bind, but keeps running without HTTP or metrics
                raise PortInUseError(self._explain(
                    f"a port of {self.endpoints.ports} (HTTP, gRPC, metrics) is in use by another process: "
                    "free it or choose other ports (--http-port, --grpc-port, --metrics-port)"))
            if code is not None:
                raise ServerError(self._explain(f"tritonserver exited with code {code} during start-up"))
            look = readiness(self.endpoints.http_url)
            if look.ready or (self.loads_on_request and look.server_ready):
                loaded = [m["name"] for m in look.models if m.get("state") == "READY"]
                progress(f"server ready after {elapsed:.0f}s: " + (", ".join(loaded) or "no model loaded"))
                return
            if look.failed:
                detail = "; ".join(f"{m['name']}: {m.get('reason', '')}" for m in look.failed)
                raise ServerError(self._explain(f"model(s) failed to load: {detail}"))
            if elapsed > timeout:
                raise ServerError(self._explain(f"server not ready after {timeout:.0f}s"))
            progress(f"waiting for {', '.join(look.waiting_for)} ({elapsed:.0f}s)")
            time.sleep(0.5)

    def _port_taken(self) -> bool:
        """Whether this launch's log says that a port could not be bound."""
        if not self.log_file.exists():
            return False
        with open(self.log_file, "rb") as log:
            log.seek(self._log_start)
            return PORT_IN_USE in log.read()

    def _explain(self, what: str) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        lines = "\n".join(failure_lines(text))
        return f"{what}\n{lines}\nfull log: {self.log_file}".replace("\n\n", "\n")

    def stop(self, timeout: float = 20.0, *, drain: bool = True) -> None:
        """Stop the server and every process it started.

        ``drain`` (the default) sends SIGTERM to ``tritonserver`` alone first: it refuses new
        requests and lets those in flight finish for up to :attr:`drain_s` seconds, then exits.
        Whatever is left of its session (stubs, vLLM engine processes) is then ended by
        :func:`kill_session`. ``drain=False`` ends the whole session at once.
        """
        if self.process is None:
            return
        if drain and self.process.poll() is None:
            process = self.process
            drain_server(process.pid, self.endpoints.metrics_url, self.drain_s,
                         exited=lambda: process.poll() is not None)
        kill_session(self.process.pid, timeout=timeout)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill_session already SIGKILLed it
            pass
        pid, self.process = self.process.pid, None
        launcher.remove_shared_memory(self.shm_prefix)  # what a killed server or stub left in /dev/shm
        aborts.remove_folders(pid)  # the pipeline's pending aborts (kit.aborts)

    def restart(self, *, timeout: float = READY_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> "Server":
        """End every process of the server at once and start it again on the same ports.

        No drain: a server that lost a stub cannot drain (Triton waits for the requests
        routed to the dead stub, which never finish), and its clients are better served by
        an immediate error than by a wait of :attr:`drain_s` seconds.
        """
        old = self.process
        self.stop(drain=False)
        if old is not None:
            _wait_ports_free(self.endpoints)
        self.log_file = new_log("tritonserver-restart")
        return self._start_once(timeout=timeout, progress=progress)  # clients know these ports: keep them

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> "Server":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def drain_server(pid: int, metrics_url: str, drain_s: float = DRAIN_S, *,
                 exited: Callable[[], bool] | None = None) -> None:
    """SIGTERM ``tritonserver`` alone and wait until it exits or nothing is in flight, at most ``drain_s`` + 10 s.

    On SIGTERM Triton refuses new requests (HTTP closes its port; gRPC answers "Request for
    unknown model ... has no available versions") and lets those in flight finish. But it
    counts a decoupled request as in flight only until ``execute`` returns, so after the
    last stream it waits out its whole exit timeout for the Python models to unload. The
    kit's gauges (:data:`kit.health.IN_FLIGHT_GAUGES`) know better: once they show nothing in flight
    for a second, the caller may end the rest of the session (:func:`kill_session`).
    """
    exited = exited or (lambda: not pid_alive(pid))
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + drain_s + 10
    idle_since = None
    while time.monotonic() < deadline and not exited():
        if requests_in_flight(metrics_url) == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= 1.0:
                return
        else:
            idle_since = None
        time.sleep(0.25)


def _wait_ports_free(endpoints: Endpoints, timeout: float = 30.0) -> None:
    """Wait until nothing listens on the server's ports any more (a new server must bind them)."""
    deadline = time.monotonic() + timeout
    for port in endpoints.ports:
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((endpoints.host, port))
                    break
                except OSError:
                    time.sleep(0.2)


def _default_progress() -> Callable[[str], None]:
    """One status line, rewritten in place on a terminal, throttled elsewhere (notebooks, logs)."""
    last = {"t": 0.0}
    tty = sys.stderr.isatty()

    def show(message: str) -> None:
        now = time.monotonic()
        final = message.startswith("server ready")
        if tty:
            sys.stderr.write("\r\033[K" + message + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or now - last["t"] >= 5:
            print(message, file=sys.stderr, flush=True)
            last["t"] = now

    return show
