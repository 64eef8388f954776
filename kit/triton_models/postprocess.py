"""``llama_postprocess``: censors a batch of texts with :mod:`kit.guardrails`.

Stateless and batched (dynamic batching in its config.pbtxt): each request
is one text, each answer the censored text and how many words were censored.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from kit import contract
from kit.exceptions import RequestError
from kit.triton_models import tensors
from kit.triton_models.pipeline import guard_from_parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.guard = guard_from_parameters(tensors.config_parameters(config))

    def _answer(self, request):
        values = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)
        texts, counts = [], []
        for value in values:
            if not isinstance(value, (bytes, np.bytes_)):
                raise RequestError("text_input must be a BYTES/string tensor")
            try:
                text = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError("text_input is not valid UTF-8; encode the text as UTF-8") from None
            matches = self.guard.find(text)
            texts.append(self.guard.censor(text) if matches else text)
            counts.append(len(matches))
        shape = (len(texts), 1)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(shape)),
            pb_utils.Tensor("censored_words", np.array(counts, dtype=np.int32).reshape(shape)),
        ])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._answer(request))
            except RequestError as exc:
                responses.append(tensors.error_response(str(exc)))
            except Exception as exc:  # noqa: BLE001 - one bad request must not fail the batch
                responses.append(tensors.error_response(f"postprocess failed: {exc}", pb_utils.TritonError.INTERNAL))
        return responses


TritonPythonModel.__doc__ = "The output censor's Triton model.\n\n" + contract.POSTPROCESS.doc()
