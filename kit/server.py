"""The real Triton Inference Server: start it, watch it, drain and stop it, and its detached record.

Where the binary comes from is :mod:`kit.installation`; its command line and environment
are :mod:`kit.launcher`'s (shared with the container); its processes are read by
:mod:`kit.processes`.

A :class:`Server` runs in its own process session, so stopping it also ends
every stub and vLLM engine process it started (vLLM's engine core survives a
plain SIGTERM of the server otherwise).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from kit import launcher
from kit.exceptions import ServerError
from kit.installation import Installation, find_installation, kit_pythonpath
from kit.launcher import DRAIN_S
from kit.paths import new_log, state_path
from kit.processes import kill_session, pid_alive, session_processes, stub_command_lines

READY_TIMEOUT_S = 600.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- HTTP helpers


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def repository_index(http_url: str) -> list[dict]:
    """The server's view of every model: name, version, state and the reason for a failure."""
    req = urllib.request.Request(f"{http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"[]")
    except (urllib.error.URLError, OSError, ValueError):
        return []


# Gauges whose sum is the work in flight: the guarded pipeline's requests and the engine's own.
IN_FLIGHT_GAUGES = ("kit_pipeline_requests_in_flight", "vllm:num_requests_running", "vllm:num_requests_waiting")


def requests_in_flight(metrics_url: str) -> float | None:
    """Requests in flight by the :data:`IN_FLIGHT_GAUGES` on the metrics port, None when it does not answer."""
    code, body = _get(f"{metrics_url}/metrics")
    if code != 200:
        return None
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in IN_FLIGHT_GAUGES:
            total += float(line.rsplit(" ", 1)[1])
    return total


def is_ready(http_url: str) -> bool:
    return _get(f"{http_url}/v2/health/ready")[0] == 200


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Endpoints:
    http_url: str
    grpc_url: str
    metrics_url: str

    @property
    def grpc_target(self) -> str:
        """``host:port`` as tritonclient.grpc expects it."""
        return self.grpc_url.removeprefix("grpc://")


def _failure_lines(log_text: str, limit: int = 12) -> list[str]:
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
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.endpoints = Endpoints(
            http_url=f"http://{connect_host}:{http_port or free_port()}",
            grpc_url=f"grpc://{connect_host}:{grpc_port or free_port()}",
            metrics_url=f"http://{connect_host}:{metrics_port or free_port()}",
        )
        self.log_file = Path(log_file) if log_file else new_log("tritonserver")
        self.installation = installation
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.drain_s = drain_s
        self.process: subprocess.Popen | None = None

    # ---- command line
    def command(self) -> list[str]:
        """The ``tritonserver`` argv (:func:`kit.launcher.command`): this server's ports, addresses and shm names."""
        port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
        http = port(self.endpoints.http_url)
        return launcher.command(self.installation.binary, launcher.Launch(
            repository=self.repository,
            http_port=http,
            grpc_port=port(self.endpoints.grpc_url),
            metrics_port=port(self.endpoints.metrics_url),
            host=self.host,
            backend_dir=self.installation.backend_dir,
            # several servers may run at once: give each its own shared-memory names
            shm_prefix=f"kit{os.getpid()}_{http}_",
            drain_s=self.drain_s,
            extra_args=tuple(self.extra_args),
        ))

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
        if self.installation is None:
            self.installation = find_installation()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
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

    def wait_ready(self, *, timeout: float = READY_TIMEOUT_S, progress: Callable[[str], None] | None = None) -> None:
        """Block until the server and every model are ready; raise with the server's own error lines."""
        progress = progress or _default_progress()
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            code = self.process.poll() if self.process else None
            if code is not None:
                raise ServerError(self._explain(f"tritonserver exited with code {code} during start-up"))
            models = repository_index(self.endpoints.http_url)
            if models and is_ready(self.endpoints.http_url) and all(m.get("state") == "READY" for m in models):
                progress(f"server ready after {elapsed:.0f}s: " + ", ".join(m["name"] for m in models))
                return
            failed = [m for m in models if m.get("state") == "UNAVAILABLE"]
            if failed:
                detail = "; ".join(f"{m['name']}: {m.get('reason', '')}" for m in failed)
                raise ServerError(self._explain(f"model(s) failed to load: {detail}"))
            if elapsed > timeout:
                raise ServerError(self._explain(f"server not ready after {timeout:.0f}s"))
            loading = [m["name"] for m in models if m.get("state") != "READY"] or ["server"]
            progress(f"waiting for {', '.join(loading)} ({elapsed:.0f}s)")
            time.sleep(0.5)

    def _explain(self, what: str) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        lines = "\n".join(_failure_lines(text))
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
        self.process = None

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
        return self.start(timeout=timeout, progress=progress)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> "Server":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- detached servers
    def record(self) -> dict:
        return {
            "pid": self.pid,
            **asdict(self.endpoints),
            "repository": str(self.repository),
            "log": str(self.log_file),
        }


def drain_server(pid: int, metrics_url: str, drain_s: float = DRAIN_S, *,
                 exited: Callable[[], bool] | None = None) -> None:
    """SIGTERM ``tritonserver`` alone and wait until it exits or nothing is in flight, at most ``drain_s`` + 10 s.

    On SIGTERM Triton refuses new requests (HTTP closes its port; gRPC answers "Request for
    unknown model ... has no available versions") and lets those in flight finish. But it
    counts a decoupled request as in flight only until ``execute`` returns, so after the
    last stream it waits out its whole exit timeout for the Python models to unload. The
    kit's gauges (:data:`IN_FLIGHT_GAUGES`) know better: once they show nothing in flight
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
    ports = [int(url.rsplit(":", 1)[1]) for url in (endpoints.http_url, endpoints.grpc_url, endpoints.metrics_url)]
    host = endpoints.http_url.split("//", 1)[1].rsplit(":", 1)[0]
    deadline = time.monotonic() + timeout
    for port in ports:
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
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


def write_state(server: Server, extra: Mapping[str, object] | None = None, **more) -> Path:
    """Record a detached server (and ``extra``/``more``: its supervisor's pid, the OpenAI service beside
    it) in ``.kit/server.json``."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**server.record(), **dict(extra or {}), **more}, indent=2) + "\n")
    temporary.replace(path)  # readers never see half a record
    return path


def read_state() -> dict | None:
    path = state_path()
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def expected_stubs(config_text: str) -> int | None:
    """How many stub processes a model's ``config.pbtxt`` asks for, or None when it depends on the GPUs.

    Every instance of a Python-based model (``python`` or the kit's ``vllm`` backend) is a
    process of its own: ``count`` per group, times the listed ``gpus`` for ``KIND_GPU``.
    """
    listing = re.search(r"instance_group\s*\[((?:[^\[\]]|\[[^\]]*\])*)\]", config_text)
    groups = re.findall(r"\{([^{}]*)\}", listing.group(1)) if listing else []
    total = 0
    for group in groups or [""]:
        count = int(m.group(1)) if (m := re.search(r"count:\s*(\d+)", group)) else 1
        if "KIND_GPU" in group:
            gpus = re.search(r"gpus:\s*\[([^\]]*)\]", group)
            if not gpus:
                return None  # one instance group per visible GPU
            count *= len([g for g in gpus.group(1).split(",") if g.strip()])
        total += count
    return total


def missing_stubs(repository: Path | str, models: list[dict], stubs: list[str]) -> dict[str, str]:
    """READY models with fewer live stubs than their ``config.pbtxt`` asks for, with what was lost.

    ``models`` is the server's repository index, ``stubs`` the stub command lines
    (:func:`stub_command_lines`): a stub's command line names its model's folder in the
    repository. Triton 2.51 keeps such a model READY and keeps routing requests to the dead
    stub, where they fail ("Stub process ... is not healthy") or never end.
    """
    repo = str(repository).rstrip("/")
    dead = {}
    for model in models:
        if model.get("state") != "READY":
            continue
        live = sum(f"{repo}/{model['name']}/" in c for c in stubs)
        config = Path(repo) / model["name"] / "config.pbtxt"
        expected = expected_stubs(config.read_text()) if config.is_file() else None
        if live == 0:
            dead[model["name"]] = "its Python stub processes are gone; restart the server"
        elif expected is not None and live < expected:
            dead[model["name"]] = (f"{expected - live} of its {expected} Python stub processes died; requests routed "
                                   "to them fail; restart the server")
    return dead


def dead_stubs(state: dict, models: list[dict]) -> dict[str, str]:
    """:func:`missing_stubs` of the detached server recorded in ``state``."""
    pid = state.get("pid")
    if not pid:
        return {}
    return missing_stubs(state.get("repository", ""), models, stub_command_lines(session_processes(pid)))


def status(state: dict | None = None) -> dict:
    """Health of the detached server: process, readiness, each model's state, recent error lines."""
    state = state or read_state()
    if not state:
        return {"running": False, "message": "no detached server (start one with `python -m kit serve --detach`)"}
    alive = pid_alive(state.get("pid"))
    models = repository_index(state["http_url"]) if alive else []
    ready = alive and is_ready(state["http_url"])
    dead = dead_stubs(state, models) if alive else {}
    for model in models:
        if model["name"] in dead:
            model["state"], model["reason"] = "STUB DIED", dead[model["name"]]
    not_ready = [m for m in models if m.get("state") != "READY"]
    ready = ready and not dead
    report = {**state, "running": alive, "ready": ready, "models": models}
    log = Path(state.get("log", ""))
    errors = _failure_lines(log.read_text(errors="replace"), limit=5) if log.is_file() else []
    if not alive and pid_alive(state.get("supervisor_pid")):
        report["message"] = f"server process {state.get('pid')} is gone; its supervisor is restarting it"
    elif not alive:
        report["message"] = f"server process {state.get('pid')} is gone; see {log}"
    elif not_ready or not ready:
        names = ", ".join(f"{m['name']} ({m.get('state')}: {m.get('reason', '')})" for m in not_ready) or "server"
        fix = ("its supervisor restores it within a minute or two (see "
               f"{state['health_url']})" if pid_alive(state.get("supervisor_pid")) else
               "restart with `python -m kit stop && python -m kit serve --detach`")
        report["message"] = f"NOT READY: {names}; {fix}"
    else:
        report["message"] = "ready"
    report["errors"] = errors
    return report


def restart_detached(timeout: float = READY_TIMEOUT_S) -> Server:
    """Stop the detached server and start it again on the same repository and ports."""
    state = read_state()
    if not state:
        raise ServerError("no detached server to restart: start one with `python -m kit serve --detach`")
    stop_detached()
    port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
    server = Server(state["repository"], http_port=port(state["http_url"]), grpc_port=port(state["grpc_url"]),
                    metrics_port=port(state["metrics_url"]))
    server.start(timeout=timeout)
    extra = None
    if state.get("openai_url"):  # the OpenAI service too, on its port
        from kit.openai.service import OpenAIService

        api = OpenAIService(server.endpoints.grpc_url, port=port(state["openai_url"].removesuffix("/v1")),
                            workers=state.get("openai_workers", 1)).start()
        extra = api.record()
        api.process = None
    write_state(server, extra=extra)
    server.process = None  # detached: `python -m kit stop` ends it
    return server


def stop_detached(*, drain: bool = False) -> bool:
    """Stop the server recorded in ``.kit/server.json``; True when one was running.

    ``drain``: let the requests in flight finish first (:func:`drain_server`).
    """
    state = read_state()
    if not state:
        return False
    pid = state.get("pid")
    was_running = pid_alive(pid)
    if state.get("openai_pid"):  # the OpenAI service first: it talks to the server
        kill_session(state["openai_pid"])
    supervisor = state.get("supervisor_pid")
    if pid_alive(supervisor):
        # The supervisor drains and stops its server on SIGTERM (and must not restart it).
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_S + 40
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    elif was_running and drain:
        drain_server(pid, state["metrics_url"])
    if pid:
        kill_session(pid)
    state_path().unlink(missing_ok=True)
    return was_running
