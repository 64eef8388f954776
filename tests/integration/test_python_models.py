"""Plain Python models next to the kit's on its server: numeric outputs arrive whole.

NVIDIA's vLLM-backend CI loads such a model (add_sub) beside vLLM. When the pip-installed
server's stub embedded another interpreter than the kit's, with numpy 2, every FP32/INT32/BOOL
output reached the client with 0 bytes (:func:`kit.installation.stub_search_path`).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.conftest import NUMERIC_MODEL

pytestmark = pytest.mark.integration

A = np.array([1.5, -2.0, 3.0, 0.0], dtype=np.float32)
B = np.array([0.5, 1.0, -1.0, 2.0], dtype=np.float32)


def _inputs(module):
    inputs = [module.InferInput("A", [4], "FP32"), module.InferInput("B", [4], "FP32")]
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    return inputs


def _check(result) -> str:
    np.testing.assert_array_equal(result.as_numpy("SUM"), A + B)
    np.testing.assert_array_equal(result.as_numpy("COUNT"), [4])
    np.testing.assert_array_equal(result.as_numpy("POSITIVE"), A > 0)
    runtime = result.as_numpy("RUNTIME")[0]
    return runtime.decode() if isinstance(runtime, bytes) else runtime  # JSON gives text, binary gives bytes


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_numeric_outputs_over_http(server, binary):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url.split("://", 1)[1])
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("SUM", "COUNT", "POSITIVE", "RUNTIME")]
    _check(client.infer(NUMERIC_MODEL, _inputs(httpclient), outputs=outputs))


def test_numeric_outputs_over_grpc(server):
    import tritonclient.grpc as grpcclient

    result = grpcclient.InferenceServerClient(server.grpc_address).infer(NUMERIC_MODEL, _inputs(grpcclient))
    response = result.get_response()
    sizes = {out.name: len(raw) for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    assert {name: sizes[name] for name in ("SUM", "COUNT", "POSITIVE")} == {"SUM": 16, "COUNT": 4, "POSITIVE": 4}
    _check(result)


def test_the_stub_embeds_the_kits_interpreter(server):
    """The stub runs with this environment's numpy and prefix, not whatever ``python3`` comes first."""
    import tritonclient.grpc as grpcclient

    if server.server is None:
        pytest.skip("an external server runs in an environment of its own")
    runtime = _check(grpcclient.InferenceServerClient(server.grpc_address).infer(NUMERIC_MODEL, _inputs(grpcclient)))
    assert runtime == f"{np.__version__} {sys.prefix}"
