"""The detached server: its record in ``.kit/server.json``, its status, restarting and stopping it.

``python -m kit serve --detach`` (and notebook 02) leaves a server running after it
returns and records it as a :class:`ServerState`: pids, the host and ports clients
connect to, the repository and the log, and, when there are, its supervisor and the
OpenAI service beside it. ``python -m kit status`` reads it into a :class:`Status`;
``python -m kit stop`` ends everything it names and deletes it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kit import health
from kit.endpoints import Endpoints
from kit.exceptions import ServerError
from kit.launcher import DRAIN_S
from kit.paths import state_path
from kit.processes import kill_session, pid_alive
from kit.server import READY_TIMEOUT_S, Server, drain_server, failure_lines

START_HINT = "start one with `python -m kit serve --detach`"


@dataclass(frozen=True)
class ServerState:
    """What ``.kit/server.json`` records of a detached server: hosts and ports, never URLs.

    ``supervisor_pid``/``health_port``: the ``kit serve`` process that watches and restarts
    the server, and the port of its ``/health``; ``openai_*``: the OpenAI service beside it.
    """

    pid: int
    endpoints: Endpoints
    repository: str
    log: str
    supervisor_pid: int | None = None
    health_port: int | None = None
    openai_pid: int | None = None
    openai_port: int | None = None
    openai_workers: int = 1
    openai_log: str | None = None

    @classmethod
    def of(cls, server: Server, api: Any = None, **more: Any) -> "ServerState":
        """The record of a started ``server`` and of ``api`` (a started :class:`kit.openai.service.OpenAIService`)."""
        if api is not None:
            more.update(openai_pid=api.pid, openai_port=api.port, openai_workers=api.workers,
                        openai_log=str(api.log_file))
        return cls(pid=server.pid, endpoints=server.endpoints, repository=str(server.repository),
                   log=str(server.log_file), **more)

    @property
    def health_url(self) -> str | None:
        """The supervisor's ``/health``, None without a supervisor."""
        return f"http://{self.endpoints.host}:{self.health_port}/health" if self.health_port else None

    @property
    def openai_url(self) -> str | None:
        """What OpenAI clients take as ``base_url`` (``http://host:port/v1``), None without the service."""
        return f"http://{self.endpoints.host}:{self.openai_port}/v1" if self.openai_port else None

    def addresses(self) -> dict[str, str]:
        """What a user connects to and reads, by name (the endpoints, the services beside them, repository, log)."""
        shown = {"http": self.endpoints.http_url, "grpc": self.endpoints.grpc_address,
                 "metrics": self.endpoints.metrics_url, "openai": self.openai_url, "health": self.health_url,
                 "repository": self.repository, "log": self.log}
        return {name: value for name, value in shown.items() if value}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ServerState":
        """Read :meth:`to_json`'s text; ValueError or TypeError when it is not such a record."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("endpoints"), dict):
            raise ValueError("no endpoints (a record of an older kit, or not a server record)")
        state = cls(**{**data, "endpoints": Endpoints(**data["endpoints"])})
        numbers = (state.pid, *state.endpoints.ports)
        if not all(isinstance(n, int) and n > 0 for n in numbers) or not isinstance(state.endpoints.host, str):
            raise ValueError("the pid, host or ports are not what a server record holds")
        return state


def write_state(state: ServerState) -> Path:
    """Record a detached server in ``.kit/server.json`` (atomically: readers never see half a record)."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.to_json())
    temporary.replace(path)
    return path


def read_state(path: Path | None = None) -> ServerState | None:
    """The detached server's record (default ``.kit/server.json``), None when there is none.

    Raises :class:`ServerError` naming the fix when the file is not a record this kit wrote
    (damaged, or written by an older kit).
    """
    path = path or state_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return ServerState.from_json(text)
    except (ValueError, TypeError) as exc:
        raise ServerError(
            f"{path} is not a server record this kit can read ({exc}); if a server it names still runs, stop it "
            f"(`kill -TERM -- -<pid>` with the pid in the file), then delete the file (`rm {path}`)") from None


@dataclass(frozen=True)
class Status:
    """The detached server's health, as ``python -m kit status`` reports it.

    ``models``: the repository index (``name``, ``version``, ``state``, ``reason``), a model
    that lost a stub shown as ``STUB DIED``; ``errors``: the log's last failure lines.
    """

    state: ServerState | None
    running: bool
    ready: bool
    message: str
    models: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``python -m kit status --json``: the record's fields and addresses, then the health."""
        record = {**asdict(self.state), **self.state.addresses()} if self.state else {}
        return {**record, "running": self.running, "ready": self.ready, "message": self.message,
                "models": self.models, "errors": self.errors}


def status(state: ServerState | None = None) -> Status:
    """Health of the detached server (``state``, default the recorded one): process, readiness, each model, errors."""
    state = state or read_state()
    if not state:
        return Status(None, running=False, ready=False, message=f"no detached server ({START_HINT})")
    alive = pid_alive(state.pid)
    look = health.readiness(state.endpoints.http_url) if alive else health.Readiness(False)
    models = look.models
    dead = health.lost_stubs(state.pid, state.repository, models) if alive else {}
    for model in models:
        if model["name"] in dead:
            model["state"], model["reason"] = "STUB DIED", dead[model["name"]]
    not_ready = [m for m in models if m.get("state") != "READY"]
    ready = look.ready and not dead
    log = Path(state.log)
    errors = failure_lines(log.read_text(errors="replace"), limit=5) if log.is_file() else []
    supervised = pid_alive(state.supervisor_pid)
    if not alive and supervised:
        message = f"server process {state.pid} is gone; its supervisor is restarting it"
    elif not alive:
        message = f"server process {state.pid} is gone; see {log}"
    elif not ready:
        names = ", ".join(f"{m['name']} ({m.get('state')}: {m.get('reason', '')})" for m in not_ready) or "server"
        fix = (f"its supervisor restores it within a minute or two (see {state.health_url})" if supervised else
               "restart with `python -m kit stop && python -m kit serve --detach`")
        message = f"NOT READY: {names}; {fix}"
    else:
        message = "ready"
    return Status(state, running=alive, ready=ready, message=message, models=models, errors=errors)


def restart_detached(timeout: float = READY_TIMEOUT_S) -> Server:
    """Stop the detached server and start it again on the same repository and ports."""
    state = read_state()
    if not state:
        raise ServerError(f"no detached server to restart: {START_HINT}")
    stop_detached()
    ports = state.endpoints
    server = Server(state.repository, http_port=ports.http_port, grpc_port=ports.grpc_port,
                    metrics_port=ports.metrics_port)
    server.start(timeout=timeout)
    api = None
    if state.openai_port:  # the OpenAI service too, on its port
        from kit.openai.service import OpenAIService

        api = OpenAIService(server.endpoints.grpc_address, port=state.openai_port,
                            workers=state.openai_workers).start()
    write_state(ServerState.of(server, api))
    server.process = None  # detached: `python -m kit stop` ends it
    if api is not None:
        api.process = None
    return server


def stop_detached(*, drain: bool = False) -> bool:
    """Stop the server recorded in ``.kit/server.json``; True when one was running.

    ``drain``: let the requests in flight finish first (:func:`kit.server.drain_server`).
    """
    state = read_state()
    if not state:
        return False
    was_running = pid_alive(state.pid)
    if state.openai_pid:  # the OpenAI service first: it talks to the server
        kill_session(state.openai_pid)
    supervisor = state.supervisor_pid
    if pid_alive(supervisor):
        # The supervisor drains and stops its server on SIGTERM (and must not restart it).
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_S + 40
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    elif was_running and drain:
        drain_server(state.pid, state.endpoints.metrics_url)
    kill_session(state.pid)
    state_path().unlink(missing_ok=True)
    return was_running
