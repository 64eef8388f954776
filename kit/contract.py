"""Every Triton model's inputs and outputs, declared once.

One :class:`Contract` per model drives everything that names a tensor:
``config.pbtxt`` (:mod:`kit.repository`), the vLLM backend's
``auto_complete_config`` (so NVIDIA's two-line sample ``config.pbtxt`` loads),
the client's tensor types (:mod:`kit.client`), perf_analyzer's input data and
the model classes' docstrings. Pure Python: importable without Triton.

The LLM's tensors are those of NVIDIA's vLLM backend (``src/model.py`` of
``triton-inference-server/vllm_backend``, read 2026-12): same names, data types
and dims, so one model repository serves on either backend.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tensor:
    """One input or output: ``dtype`` is Triton's name without ``TYPE_`` (``STRING`` is BYTES)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    description: str
    optional: bool = False

    @property
    def config_type(self) -> str:
        return f"TYPE_{self.dtype}"

    @property
    def wire_type(self) -> str:
        """The datatype clients put on the wire (tritonclient's ``InferInput`` datatype)."""
        return "BYTES" if self.dtype == "STRING" else self.dtype

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        opt = " optional: true" if self.optional else ""
        return f'  {{ name: "{self.name}" data_type: {self.config_type} dims: [ {dims} ]{opt} }}'

    def auto_complete(self) -> dict:
        """The dict ``auto_complete_model_config.add_input/add_output`` takes."""
        entry = {"name": self.name, "data_type": self.config_type, "dims": list(self.dims)}
        if self.optional:
            entry["optional"] = True
        return entry


@dataclass(frozen=True)
class Contract:
    """A model's inputs and outputs, in ``config.pbtxt`` order."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def input(self, name: str) -> Tensor:
        return _find(self.inputs, name, "input")

    def output(self, name: str) -> Tensor:
        return _find(self.outputs, name, "output")

    def pbtxt(self) -> str:
        """The ``input [...]`` and ``output [...]`` blocks of ``config.pbtxt``."""
        return "\n".join(
            f"{kind} [\n" + ",\n".join(t.pbtxt() for t in tensors) + "\n]"
            for kind, tensors in (("input", self.inputs), ("output", self.outputs))
        )

    def doc(self) -> str:
        """A plain-text table of the tensors, for docstrings."""
        lines = []
        for title, tensors in (("Inputs", self.inputs), ("Outputs", self.outputs)):
            lines.append(f"{title}:")
            for t in tensors:
                flag = ", optional" if t.optional else ""
                dims = ", ".join(str(d) for d in t.dims)
                lines.append(f"  ``{t.name}`` {t.dtype} [{dims}]{flag}: {t.description}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The inputs and outputs as Markdown tables (the README shows the pipeline's)."""
        lines = []
        for title, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines += [f"| {title} | type | |", "| --- | --- | --- |"]
            for t in tensors:
                dims = ", ".join(str(d) for d in t.dims)
                flag = ", optional" if t.optional else ""
                lines.append(f"| `{t.name}` | {t.wire_type} [{dims}]{flag} | {t.description} |")
            lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"

    def complete(self, auto_complete_model_config) -> None:
        """Add the tensors a ``config.pbtxt`` leaves out (Triton's ``auto_complete_config`` hook)."""
        config = auto_complete_model_config.as_dict()
        have_in = {t["name"] for t in config.get("input", [])}
        have_out = {t["name"] for t in config.get("output", [])}
        for tensor in self.inputs:
            if tensor.name not in have_in:
                auto_complete_model_config.add_input(tensor.auto_complete())
        for tensor in self.outputs:
            if tensor.name not in have_out:
                auto_complete_model_config.add_output(tensor.auto_complete())


def _find(tensors: tuple[Tensor, ...], name: str, kind: str) -> Tensor:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise KeyError(f"no {kind} named {name!r}")


def _flag(name: str, description: str) -> Tensor:
    return Tensor(name, "BOOL", (1,), description, optional=True)


LLM = Contract(
    inputs=(
        Tensor("text_input", "STRING", (1,), "the prompt, UTF-8"),
        _flag("stream", "true: one response per new piece of text (decoupled)"),
        Tensor("sampling_parameters", "STRING", (1,), "JSON object of vLLM SamplingParams fields (+ lora_name)",
               optional=True),
        _flag("exclude_input_in_output", "false (default without streaming): the prompt precedes the text"),
        _flag("return_finish_reason", "add finish_reason"),
        _flag("return_cumulative_logprob", "add cumulative_logprob"),
        _flag("return_logprobs", "add logprobs (needs sampling parameter logprobs)"),
        _flag("return_num_input_tokens", "add num_input_tokens"),
        _flag("return_num_output_tokens", "add num_output_tokens"),
    ),
    outputs=(
        Tensor("text_output", "STRING", (-1,), "generated text, one element per sequence (n), in order"),
        Tensor("finish_reason", "STRING", (-1,), "per sequence: stop, length, abort, or None while streaming"),
        Tensor("cumulative_logprob", "FP32", (-1,), "per sequence: log-probability of its tokens so far"),
        Tensor("logprobs", "STRING", (-1,),
               "per sequence: JSON list, one {token id: {logprob, rank, decoded_token}} per token of this "
               "response, or null without the sampling parameter logprobs"),
        Tensor("num_input_tokens", "UINT32", (1,), "tokens of the prompt"),
        Tensor("num_output_tokens", "UINT32", (-1,), "per sequence: tokens in this response"),
    ),
)

POSTPROCESS = Contract(
    inputs=(Tensor("text_input", "STRING", (1,), "text to censor"),),
    outputs=(
        Tensor("text_output", "STRING", (1,), "the text with profane words masked"),
        Tensor("censored_words", "INT32", (1,), "words masked"),
    ),
)

PIPELINE = Contract(
    inputs=(
        Tensor("text_input", "STRING", (1,), "the user's message (chat-formatted unless prompt_is_formatted)"),
        _flag("stream", "true: one response per censored piece of text"),
        Tensor("max_tokens", "INT32", (1,), "tokens to generate at most (default 256); wins over the JSON's",
               optional=True),
        Tensor("sampling_parameters", "STRING", (1,), "JSON object of vLLM SamplingParams fields, n excepted",
               optional=True),
        _flag("prompt_is_formatted", "true: text_input already carries the chat template"),
        _flag("return_finish_reason", "add finish_reason"),
        _flag("return_num_input_tokens", "add num_input_tokens"),
        _flag("return_num_output_tokens", "add num_output_tokens"),
        _flag("return_logprobs", "add logprobs (needs sampling parameter logprobs; refused while the output "
                                 "censor is on, as the tokens would reveal censored words)"),
    ),
    outputs=(
        Tensor("text_output", "STRING", (1,), "the guarded answer (or the refusal)"),
        Tensor("input_blocked", "BOOL", (1,), "the input guard refused the prompt"),
        Tensor("censored_words", "INT32", (1,), "words masked in this response"),
        Tensor("finish_reason", "STRING", (1,), "stop or length on the last response (blocked: stop), else None"),
        Tensor("num_input_tokens", "UINT32", (1,), "tokens of the prompt the LLM saw (blocked: 0)"),
        Tensor("num_output_tokens", "UINT32", (1,), "tokens the LLM generated since the previous response"),
        Tensor("logprobs", "STRING", (1,), "JSON list of the tokens' logprobs since the previous response"),
    ),
)

# The pipeline's optional outputs, each asked for by the input ``return_<name>``.
PIPELINE_EXTRAS = ("finish_reason", "num_input_tokens", "num_output_tokens", "logprobs")
# Request parameters of the vLLM backend: the id a caller gives its request (the pipeline does, for
# its LLM requests), and a request that aborts the requests with that id. The pipeline itself aborts
# through kit.aborts: an abort sent as a second BLS request crashed Triton 2.51's server.
ID_PARAMETER = "kit_request_id"
ABORT_PARAMETER = "kit_abort"
# The error message of a cancelled LLM request. Its code may not survive a BLS hop; the message does.
CANCELLED_MESSAGE = "request cancelled"


def for_model(model: str) -> Contract:
    """The contract of a model of the kit's repository (pipeline variants share the pipeline's)."""
    from kit.config import LLM_MODEL, POSTPROCESS_MODEL

    return {LLM_MODEL: LLM, POSTPROCESS_MODEL: POSTPROCESS}.get(model, PIPELINE)
