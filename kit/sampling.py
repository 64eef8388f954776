"""Validation of the ``sampling_parameters`` JSON that clients send.

The JSON maps onto vLLM's ``SamplingParams``. Every field is checked here,
before it reaches the engine, so that a bad request gets a precise
``INVALID_ARG`` answer ("temperature must be a finite number ≥ 0, got 'hot'")
instead of a stack trace, and so that odd input (NaN, huge nesting, private
fields) can never reach vLLM. Pure Python: used by the vLLM backend, the
pipeline and the tests alike.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from kit.exceptions import RequestError

MAX_JSON_BYTES = 64 * 1024
MAX_LIST_ITEMS = 4096


def _number(name: str, value: Any, kind: type, minimum: float | None = None, maximum: float | None = None):
    if isinstance(value, bool):
        raise RequestError(f"sampling parameter {name!r} must be a number, got a boolean")
    if isinstance(value, str):  # like NVIDIA's backend, accept numbers sent as strings
        try:
            value = kind(value.strip())
        except ValueError:
            raise RequestError(f"sampling parameter {name!r} must be a number, got {value[:40]!r}") from None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise RequestError(f"sampling parameter {name!r} must be an integer, got {value!r}")
    else:
        if not isinstance(value, (int, float)):
            raise RequestError(f"sampling parameter {name!r} must be a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise RequestError(f"sampling parameter {name!r} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise RequestError(f"sampling parameter {name!r} must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise RequestError(f"sampling parameter {name!r} must be ≤ {maximum}, got {value}")
    return value


def _int(minimum=None, maximum=None) -> Callable:
    return lambda name, v: _number(name, v, int, minimum, maximum)


def _float(minimum=None, maximum=None) -> Callable:
    return lambda name, v: _number(name, v, float, minimum, maximum)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RequestError(f"sampling parameter {name!r} must be true or false, got {value!r}")


def _str_list(name: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise RequestError(f"sampling parameter {name!r} must be a non-empty string or a list of them")
    if len(items) > MAX_LIST_ITEMS:
        raise RequestError(f"sampling parameter {name!r} has more than {MAX_LIST_ITEMS} entries")
    return items


def _int_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise RequestError(f"sampling parameter {name!r} must be a non-empty list of token ids")
    if len(value) > MAX_LIST_ITEMS:
        raise RequestError(f"sampling parameter {name!r} has more than {MAX_LIST_ITEMS} entries")
    return [_number(f"{name}[]", v, int, 0) for v in value]


def _bias(name: str, value: Any) -> dict[int, float]:
    if not isinstance(value, dict) or len(value) > MAX_LIST_ITEMS:
        raise RequestError(f"sampling parameter {name!r} must be an object of token id → bias")
    out = {}
    for key, bias in value.items():
        out[_number(f"{name} key", key, int, 0)] = _number(f"{name}[{key}]", bias, float, -100.0, 100.0)
    return out


# The public fields of vLLM's SamplingParams that clients may set.
FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "n": _int(1, 16),
    "temperature": _float(0.0, 100.0),
    "top_p": _float(0.0, 1.0),
    "top_k": _int(-1),
    "min_p": _float(0.0, 1.0),
    "presence_penalty": _float(-2.0, 2.0),
    "frequency_penalty": _float(-2.0, 2.0),
    "repetition_penalty": _float(0.0, 100.0),
    "seed": _int(0, 2**63 - 1),
    "max_tokens": _int(1),
    "min_tokens": _int(0),
    "ignore_eos": _bool,
    "stop": _str_list,
    "stop_token_ids": _int_list,
    "bad_words": _str_list,
    "allowed_token_ids": _int_list,
    "logit_bias": _bias,
    "logprobs": _int(0, 20),
    "skip_special_tokens": _bool,
    "spaces_between_special_tokens": _bool,
    "include_stop_str_in_output": _bool,
}


def parse(raw: bytes | str | None, *, max_context: int | None = None) -> dict[str, Any]:
    """Parse and validate a ``sampling_parameters`` JSON object; ``null`` values are dropped.

    Raises :class:`RequestError` with a message that names the field and the fix.
    """
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        if len(raw) > MAX_JSON_BYTES:
            raise RequestError(f"sampling_parameters is {len(raw)} bytes; the limit is {MAX_JSON_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("sampling_parameters is not valid UTF-8; send a JSON object as UTF-8 text") from None
    if not isinstance(raw, str):
        raise RequestError("sampling_parameters must be a JSON object sent as a string")
    if len(raw) > MAX_JSON_BYTES:
        raise RequestError(f"sampling_parameters is {len(raw)} characters; the limit is {MAX_JSON_BYTES}")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError("sampling_parameters is nested too deeply; send a flat JSON object") from None
    except ValueError as exc:
        raise RequestError(f"sampling_parameters is not valid JSON ({exc}); send e.g. {{\"temperature\": 0.7}}") from None
    if not isinstance(data, dict):
        raise RequestError(f"sampling_parameters must be a JSON object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        check = FIELDS.get(name)
        if check is None:
            known = ", ".join(sorted(FIELDS))
            raise RequestError(f"unknown sampling parameter {name[:60]!r}; supported: {known}")
        out[name] = check(name, value)
    if max_context is not None and out.get("max_tokens", 0) > max_context:
        raise RequestError(
            f"max_tokens {out['max_tokens']} exceeds the model's context of {max_context} tokens; ask for fewer"
        )
    return out


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in sampling_parameters")
