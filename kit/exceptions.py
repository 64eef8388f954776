"""One error family for the whole kit, every class in this module.

Every message says what went wrong *and* what to do about it, so a user who
only sees the last line of a traceback (or a notebook's red cell) can act::

    KitError                      base: every error the kit raises on purpose
     ├── SetupError               a binary, library or package is missing or broken
     ├── ConfigError (ValueError) a deployment setting or parameter is invalid
     ├── ServerError              the Triton server did not start, stopped, or a model is not ready
     │    └── PortInUseError      another process holds one of the server's ports
     ├── InferenceError           the server answered a request with an error
     ├── RequestError (ValueError) a request sent to a model is invalid
     ├── NotebookError            a notebook run failed (its report marks the cell)
     ├── PerfAnalyzerError        perf_analyzer ran but produced no result
     └── APIError                 the OpenAI-compatible service refuses a request (with its HTTP status)
          └── TritonError         Triton refused or failed the request the service made for it

Every entry point (``python -m kit``, ``python -m kit.container``, the
scripts in ``benchmarks/``) prints a :class:`KitError` as one line and exits
with :data:`EXIT_CODE` (:func:`exit_with`).
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_CODE = 2
"""The exit status of every entry point after a :class:`KitError` (as argparse's for a bad command line:
the message says what to fix). 1 stays for "ran, and the result is a failure" (a missed goal, a dead stub)."""


class KitError(Exception):
    """Base class of every error the kit raises on purpose."""


class SetupError(KitError):
    """A binary, library or package the kit needs is missing or broken."""


class ConfigError(KitError, ValueError):
    """A deployment configuration or parameter is invalid."""


class ServerError(KitError):
    """The Triton server could not start, stopped, or a model is not ready."""


class PortInUseError(ServerError):
    """tritonserver could not bind one of its ports: another process holds it."""


class InferenceError(KitError):
    """The server answered a request with an error (its message is kept; ``status`` is its code)."""

    def __init__(self, message: str, *, status: str = ""):
        super().__init__(message)
        self.status = status


class RequestError(KitError, ValueError):
    """A request sent to a model is invalid; the message says what to fix.

    Triton models turn it into an ``INVALID_ARG`` error response and keep serving.
    """


class NotebookError(KitError):
    """A notebook failed; ``run`` (a :class:`kit.notebooks.runner.NotebookRun`) tells which, and where its report is."""

    def __init__(self, message: str, run: Any):
        super().__init__(message)
        self.run = run


class PerfAnalyzerError(KitError):
    """perf_analyzer ran but produced no result; the message quotes its own words."""


def exit_with(exc: KitError) -> int:
    """Print ``error: <message>`` to stderr and return :data:`EXIT_CODE` (for ``return``/``sys.exit`` in a main)."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return EXIT_CODE


class APIError(KitError):
    """A request the OpenAI-compatible service refuses, as OpenAI's error object with its HTTP status."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
             500: "server_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends it."""
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


class TritonError(APIError):
    """Triton refused or failed a request of the OpenAI service; ``status`` is the HTTP status it stands for."""

    def __init__(self, message: str, status: int):
        super().__init__(status, message)
