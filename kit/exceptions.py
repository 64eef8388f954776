"""One error family for the whole kit.

Every message says what went wrong *and* what to do about it, so a user who
only sees the last line of a traceback (or a notebook's red cell) can act.
"""


class KitError(Exception):
    """Base class of every error the kit raises on purpose."""


class SetupError(KitError):
    """A binary, library or package the kit needs is missing or broken."""


class ConfigError(KitError, ValueError):
    """A deployment configuration or parameter is invalid."""


class ServerError(KitError):
    """The Triton server could not start, stopped, or a model is not ready."""


class InferenceError(KitError):
    """The server answered a request with an error (its message is kept)."""

    def __init__(self, message: str, *, status: str = ""):
        super().__init__(message)
        self.status = status


class RequestError(KitError, ValueError):
    """A request sent to a model is invalid; the message says what to fix.

    Triton models turn it into an ``INVALID_ARG`` error response and keep serving.
    """
