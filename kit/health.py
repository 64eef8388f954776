"""Is a Triton server healthy: one readiness probe, its model index, each model's stubs, the work in flight.

Every check of a server goes through here: :class:`kit.server.Server` waiting for its
models, the :mod:`kit.supervisor`, ``kit status``, the container's health check and the
tests' fixtures.

Triton 2.51 keeps a model READY (and ``/v2/health/ready`` green) after one of its Python
stub processes died, and keeps routing requests to the dead stub, where they fail ("Stub
process ... is not healthy") or never end. So readiness alone is not health: each READY
model's live stubs are counted against its ``config.pbtxt`` (:func:`missing_stubs`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kit import metrics
from kit.exceptions import ServerError
from kit.processes import session_processes, stub_command_lines

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"

# Gauges whose sum is the work in flight: the guarded pipeline's requests and the engine's own.
IN_FLIGHT_GAUGES = ("kit_pipeline_requests_in_flight", "vllm:num_requests_running", "vllm:num_requests_waiting")


def probe(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``: ``(HTTP status, "")``, or ``(0, why)`` when nothing answered (refused, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def wait_for_service(url: str, process: subprocess.Popen | None, timeout: float, what: str, *,
                     explain: Callable[[str], str] = str, interval_s: float = 0.5) -> None:
    """Block until GET ``url`` answers 200 (a service the kit started beside Triton: the OpenAI service,
    ``vllm serve``); :class:`ServerError`, its message passed through ``explain``, when ``process`` exits
    first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ServerError(explain(f"{what} exited with code {process.returncode} during start-up"))
        if probe(url, timeout=5)[0] == 200:
            return
        if time.monotonic() > deadline:
            raise ServerError(explain(f"{what} was not ready after {timeout:.0f}s"))
        time.sleep(interval_s)


def is_ready(http_url: str, timeout: float = 2.0) -> bool:
    """Whether ``<http_url>/v2/health/ready`` answers 200 (the server and, by default, every model are ready)."""
    return probe(http_url + READY_PATH, timeout)[0] == 200


def repository_index(http_url: str) -> list[dict]:
    """The server's view of every model: ``name``, ``version``, ``state`` (READY, LOADING, UNAVAILABLE...) and
    ``reason`` for a failure; ``[]`` when the server does not answer."""
    req = urllib.request.Request(f"{http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"[]")
    except (urllib.error.URLError, OSError, ValueError):
        return []


@dataclass(frozen=True)
class Readiness:
    """One look at a server: whether ``/v2/health/ready`` answered 200, and its repository index."""

    server_ready: bool
    models: list[dict] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """The server says ready, lists models, and every one of them is READY."""
        return self.server_ready and bool(self.models) and all(m.get("state") == "READY" for m in self.models)

    @property
    def failed(self) -> list[dict]:
        """The models that failed to load (UNAVAILABLE, with Triton's ``reason``; not those merely unloaded)."""
        return [m for m in self.models if m.get("state") == "UNAVAILABLE" and m.get("reason") != "unloaded"]

    @property
    def waiting_for(self) -> list[str]:
        """What is not ready yet: the models that are not READY, or ``server`` when none is listed."""
        return [m["name"] for m in self.models if m.get("state") != "READY"] or ["server"]


def readiness(http_url: str) -> Readiness:
    """The readiness probe: the repository index, then ``/v2/health/ready``."""
    models = repository_index(http_url)
    return Readiness(bool(models) and is_ready(http_url), models)


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
    (:func:`kit.processes.stub_command_lines`): a stub's command line names its model's
    folder in the repository.
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


def lost_stubs(session: int | None, repository: Path | str, models: list[dict]) -> dict[str, str]:
    """:func:`missing_stubs` of the server that leads process session ``session`` (its pid); ``{}`` without one."""
    if not session:
        return {}
    return missing_stubs(repository, models, stub_command_lines(session_processes(session)))


def requests_in_flight(metrics_url: str) -> float | None:
    """Requests in flight by the :data:`IN_FLIGHT_GAUGES` on the metrics port, None when it does not answer."""
    try:
        samples = metrics.scrape(metrics_url, timeout=2.0)
    except ServerError:
        return None
    return sum(metrics.total(samples, name) for name in IN_FLIGHT_GAUGES)
