"""Reading request tensors and writing responses inside a Triton Python model."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from kit.exceptions import RequestError

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def config_parameters(model_config: dict) -> dict[str, str]:
    """The ``parameters`` of a parsed config.pbtxt as ``key → string_value``."""
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def optional(request, name: str):
    """The first element of input ``name``, or None when the client did not send it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.size == 0:
        raise RequestError(f"input {name!r} is empty; send one element")
    return array.reshape(-1)[0]


def text(request, name: str, *, required: bool = True) -> str | None:
    """Input ``name`` as UTF-8 text (a BYTES tensor holding one string)."""
    value = optional(request, name)
    if value is None:
        if required:
            raise RequestError(f"input {name!r} is required; send the prompt as a BYTES tensor of shape [1]")
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, (bytes, np.bytes_)):
        raise RequestError(f"input {name!r} must be a BYTES/string tensor, got {type(value).__name__}")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"input {name!r} is not valid UTF-8; encode the text as UTF-8") from None


def flag(request, name: str, default: bool = False) -> bool:
    value = optional(request, name)
    return default if value is None else bool(value)


def integer(request, name: str) -> int | None:
    value = optional(request, name)
    return None if value is None else int(value)


def error_response(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def bytes_tensor(name: str, values) -> "pb_utils.Tensor":
    return pb_utils.Tensor(name, np.array([v.encode("utf-8") for v in values], dtype=np.object_))


def send_error(sender, message: str, code=None) -> None:
    """Answer with an error and close the response stream (the client never hangs)."""
    sender.send(error_response(message, code), flags=FINAL)
