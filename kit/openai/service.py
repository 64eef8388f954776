"""Running the OpenAI service as a process of its own, beside a Triton server.

``python -m kit serve --openai`` starts one after Triton is ready; a detached one is
recorded in ``.kit/server.json`` (``openai_pid``, ``openai_port``: :class:`kit.detached.ServerState`) and ended by
``python -m kit stop``. The process runs in its own session, like the server, so stopping
it leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

DEFAULT_PORT = 9000
READY_TIMEOUT_S = 120.0


class OpenAIService:
    """``python -m kit.openai`` for the Triton server at ``grpc_url``.

    >>> with OpenAIService("127.0.0.1:8001") as api:   # doctest: +SKIP
    ...     print(api.url)                                   # http://127.0.0.1:9000/v1
    """

    def __init__(self, grpc_url: str, *, host: str = "127.0.0.1", port: int | None = None,
                 log_file: Path | str | None = None, env: Mapping[str, str] | None = None,
                 tokenizer: str | None = None, workers: int = 1):
        from kit.endpoints import free_port
        from kit.paths import new_log

        self.grpc_url = grpc_url
        self.host = host
        self.port = port or free_port()
        self.log_file = Path(log_file) if log_file else new_log("openai")
        self.extra_env = dict(env or {})
        self.tokenizer = tokenizer
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        from kit.endpoints import connect_host

        return f"http://{connect_host(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        """What OpenAI clients take as ``base_url``."""
        return self.base_url + "/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "kit.openai", "--grpc-url", self.grpc_url, "--host", self.host,
               "--port", str(self.port), "--workers", str(self.workers)]
        return cmd + (["--tokenizer", self.tokenizer] if self.tokenizer else [])

    def start(self, timeout: float = READY_TIMEOUT_S) -> "OpenAIService":
        from kit.installation import kit_pythonpath

        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*kit_pythonpath(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(self.extra_env)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until ``/health`` says ready (Triton and both models); raise with the log's tail."""
        from kit.health import wait_for_service

        wait_for_service(self.base_url + "/health", self.process, timeout, "the OpenAI service",
                         explain=self._explain, interval_s=0.3)

    def _explain(self, what: str) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        tail = "\n".join(text.splitlines()[-12:])
        return f"{what}\n{tail}\nfull log: {self.log_file}"

    def stop(self) -> None:
        from kit.processes import kill_session

        if self.process is None:
            return
        kill_session(self.process.pid, timeout=10)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill_session already SIGKILLed it
            pass
        self.process = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def __enter__(self) -> "OpenAIService":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
