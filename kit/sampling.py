"""Validation of the ``sampling_parameters`` JSON that clients send.

The JSON maps onto vLLM's ``SamplingParams``: every field a client may set is
accepted (:data:`FIELDS`, kept equal to the installed vLLM's fields by a unit
test), plus ``lora_name`` (NVIDIA's backend picks a LoRA adapter with it).
Here each value gets its type checked and coerced (numbers and booleans may
come as strings, like NVIDIA's backend accepts them; the string ``"false"`` is
false), so a bad request gets a precise ``INVALID_ARG`` answer instead of a
stack trace, and odd input (NaN, huge or deeply nested JSON, private fields)
never reaches vLLM. Ranges and combinations are vLLM's to judge:
``SamplingParams`` validates itself when the backend builds it. Pure Python:
used by the vLLM backend, the pipeline and the tests alike.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from kit.exceptions import RequestError

MAX_JSON_BYTES = 64 * 1024
MAX_LIST_ITEMS = 4096
# JSON schemas for structured outputs nest; nothing a client needs nests deeper than this.
MAX_DEPTH = 32


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
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
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


def _int_rows(name: str, value: Any) -> list[list[int]]:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise RequestError(f"sampling parameter {name!r} must be a list of lists of token ids")
    if sum(len(row) for row in value) > MAX_LIST_ITEMS:
        raise RequestError(f"sampling parameter {name!r} has more than {MAX_LIST_ITEMS} entries")
    return [[_number(f"{name}[][]", v, int, -1) for v in row] for row in value]


def _bias(name: str, value: Any) -> dict[int, float]:
    if not isinstance(value, dict) or len(value) > MAX_LIST_ITEMS:
        raise RequestError(f"sampling parameter {name!r} must be an object of token id → bias")
    out = {}
    for key, bias in value.items():
        out[_number(f"{name} key", key, int, 0)] = _number(f"{name}[{key}]", bias, float, -100.0, 100.0)
    return out


def _object(name: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise RequestError(f"sampling parameter {name!r} must be a JSON object")
    return value


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise RequestError(f"sampling parameter {name!r} must be a non-empty string of at most 256 characters")
    return value


# vLLM's StructuredOutputsParams: exactly one constraint, plus options.
STRUCTURED_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
STRUCTURED_OPTIONS = ("disable_any_whitespace", "disable_additional_properties", "whitespace_pattern")


def _structured(name: str, value: Any) -> dict[str, Any]:
    """``structured_outputs`` as an object, or as that object's JSON text (NVIDIA's clients send text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_reject_constant)
        except ValueError as exc:
            raise RequestError(f"sampling parameter {name!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RequestError(
            f"sampling parameter {name!r} must be an object such as "
            '{"json": <JSON schema>} or {"choice": ["yes", "no"]}'
        )
    out = {k: v for k, v in value.items() if v is not None}
    unknown = set(out) - set(STRUCTURED_CONSTRAINTS) - set(STRUCTURED_OPTIONS)
    if unknown:
        allowed = ", ".join(STRUCTURED_CONSTRAINTS + STRUCTURED_OPTIONS)
        raise RequestError(f"{name} has unknown keys {sorted(unknown)}; allowed: {allowed}")
    constraints = [k for k in STRUCTURED_CONSTRAINTS if k in out]
    if len(constraints) != 1:
        raise RequestError(
            f"{name} needs exactly one of {', '.join(STRUCTURED_CONSTRAINTS)}; got {constraints or 'none'}"
        )
    if "choice" in out:
        out["choice"] = _str_list(f"{name}.choice", out["choice"])
        if not out["choice"]:
            raise RequestError(f"{name}.choice must list at least one string")
    for key in ("regex", "grammar", "structural_tag", "whitespace_pattern"):
        if key in out and not isinstance(out[key], str):
            raise RequestError(f"{name}.{key} must be a string")
    if "json" in out and not isinstance(out["json"], (dict, str)):
        raise RequestError(f"{name}.json must be a JSON schema (an object, or its text)")
    for key in ("json_object", "disable_any_whitespace", "disable_additional_properties"):
        if key in out:
            out[key] = _bool(f"{name}.{key}", out[key])
    return out


# Every field of vLLM 0.32's SamplingParams that a client may set (the others are
# set by the backend or are private: INTERNAL_FIELDS). Ranges are vLLM's to check,
# except where a huge value would cost the server before vLLM looks at it (n).
INTERNAL_FIELDS = frozenset({"output_kind", "skip_clone", "output_text_buffer_length"})
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
    "logprobs": _int(-1),
    "prompt_logprobs": _int(-1),
    "prompt_logprob_token_ids": _int_rows,
    "prompt_logprob_start": _int(0),
    "logprob_token_ids": _int_list,
    "flat_logprobs": _bool,
    "watermarking": _bool,
    "detokenize": _bool,
    "skip_special_tokens": _bool,
    "spaces_between_special_tokens": _bool,
    "include_stop_str_in_output": _bool,
    "stream_interval": _int(1),
    "skip_reading_prefix_cache": _bool,
    "thinking_token_budget": _int(),
    "repetition_detection": _object,
    "routed_experts_prompt_start": _int(0),
    "trace_decode_token_ids": _int_list,
    "structured_outputs": _structured,
    "extra_args": _object,
}
# Not vLLM's: NVIDIA's backend reads the LoRA adapter's name from the same JSON.
EXTRA_FIELDS: dict[str, Callable[[str, Any], Any]] = {"lora_name": _name}


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
    return check(data, max_context=max_context)


def check(data: dict[str, Any], *, max_context: int | None = None) -> dict[str, Any]:
    """Validate already-decoded sampling parameters (e.g. Triton request parameters); see :func:`parse`."""
    if _depth(data) > MAX_DEPTH:
        raise RequestError(f"sampling_parameters is nested more than {MAX_DEPTH} levels deep; flatten it")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        check = FIELDS.get(name) or EXTRA_FIELDS.get(name)
        if check is None:
            known = ", ".join(sorted({**FIELDS, **EXTRA_FIELDS}))
            raise RequestError(f"unknown sampling parameter {name[:60]!r}; supported: {known}")
        out[name] = check(name, value)
    if max_context is not None and out.get("max_tokens", 0) > max_context:
        raise RequestError(
            f"max_tokens {out['max_tokens']} exceeds the model's context of {max_context} tokens; ask for fewer"
        )
    return out


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (iterative: deep input cannot exhaust the stack)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in sampling_parameters")


def to_vllm(params: dict[str, Any], **backend_fields):
    """vLLM's ``SamplingParams`` for checked ``params`` (without ``lora_name``) plus ``backend_fields``.

    vLLM validates ranges and combinations here (``min_tokens > max_tokens``, ``top_p`` of 0, ...);
    its ``VLLMValidationError`` (not a ``ValueError``) becomes a :class:`RequestError` with its message.
    """
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import RepetitionDetectionParams, SamplingParams, StructuredOutputsParams

    fields = {k: v for k, v in params.items() if k not in EXTRA_FIELDS}
    try:
        if "structured_outputs" in fields:
            fields["structured_outputs"] = StructuredOutputsParams(**fields["structured_outputs"])
        if "repetition_detection" in fields:
            fields["repetition_detection"] = RepetitionDetectionParams(**fields["repetition_detection"])
        return SamplingParams(**fields, **backend_fields)
    except (VLLMValidationError, ValueError, TypeError) as exc:
        raise RequestError(f"invalid sampling parameters: {exc}") from None
