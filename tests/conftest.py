"""Shared fixtures: one real Triton server (tiny model, CPU vLLM) for the whole test session.

Set ``KIT_TEST_HTTP_URL`` and ``KIT_TEST_GRPC_URL`` to test a server that is
already running (the Docker test compose does this) instead of starting one.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from kit import health, metrics
from kit.client import Client
from kit.config import LLM_MODEL, PIPELINE_MODEL
from kit.endpoints import to_grpc_address

ROOT = Path(__file__).resolve().parent.parent


class ServerHandle:
    """What tests need of a running server: URLs, clients, statistics, metrics."""

    def __init__(self, http_url: str, grpc_address: str, metrics_url: str, repository: Path | None, server=None):
        self.http_url = http_url
        self.grpc_address = to_grpc_address(grpc_address)  # host:port; KIT_TEST_GRPC_URL may say grpc://
        self.metrics_url = metrics_url
        self.repository = repository
        self.server = server

    def client(self, model: str = PIPELINE_MODEL, **kwargs) -> Client:
        return Client(self.grpc_address, self.http_url, model=model, **kwargs)

    def inference_count(self, model: str = LLM_MODEL) -> int:
        with urllib.request.urlopen(f"{self.http_url}/v2/models/{model}/stats", timeout=10) as resp:
            stats = json.loads(resp.read())["model_stats"]
        return sum(int(s.get("inference_count", 0)) for s in stats)

    def llm_busy(self, arrived: int, requests: int) -> bool:
        """Whether the LLM got ``requests`` more requests than ``arrived`` or reports one running.

        Two signals, since each can lag on a loaded machine: the engine's running gauge reaches
        Triton's metrics after the flusher's round trips, and Triton's inference count of a
        decoupled model may move only as its requests are released.
        """
        return (self.inference_count(LLM_MODEL) >= arrived + requests
                or self.metric("vllm:num_requests_running", model=LLM_MODEL) >= 1)

    def metrics(self) -> dict[str, float]:
        """Triton's Prometheus metrics as ``'name{labels}' → value`` (read by :mod:`kit.metrics`)."""
        return {sample.key: sample.value for sample in metrics.scrape(self.metrics_url)}

    def metric(self, name: str, **labels) -> float:
        """The sum of ``name``'s samples with these labels."""
        return metrics.total(metrics.scrape(self.metrics_url), name, **labels)

    def ready(self) -> bool:
        return health.is_ready(self.http_url, timeout=5)


def answer(client: Client, prompt: str = "still there?", max_tokens: int = 4) -> str:
    """A greedy answer that runs to ``max_tokens``: the check that a server still serves.

    Sampled at the default temperature, a few tokens of the random-weight model can decode to
    nothing (an end-of-sequence or special token), which would read as a server that failed.
    """
    return client.generate(prompt, max_tokens=max_tokens, sampling={"temperature": 0, "ignore_eos": True}).text


SAMPLE_MODEL = "tiny_lora"
LORA_ADAPTERS = ("doll", "sheep")


@pytest.fixture
def sample_model(server) -> str:
    """The session server's model laid out like NVIDIA's two-line sample, with LoRA adapters.

    A fixture rather than an import: ``from conftest import ...`` can find tests/unit's conftest first.
    """
    if server.repository is None:
        pytest.skip("the external server has no LoRA sample model")
    return SAMPLE_MODEL


def add_sample_model(repo: Path, tiny_model: Path) -> None:
    """A second vLLM model laid out as NVIDIA's sample: config.pbtxt without tensors or policy.

    Its config.pbtxt has only ``backend``, ``instance_group`` and parameters, so it loads only
    through ``auto_complete_config``; model.json enables LoRA with two random adapters of the tiny
    model (``1/multi_lora.json``) and ``disable_log_stats`` (so no engine metrics although
    ``REPORT_CUSTOM_METRICS`` is on); ``ENABLE_VLLM_HEALTH_CHECK`` is on.
    """
    from kit.weights import build_tiny_lora

    version = repo / SAMPLE_MODEL / "1"
    version.mkdir(parents=True)
    (repo / SAMPLE_MODEL / "config.pbtxt").write_text(
        'backend: "vllm"\n'
        "instance_group [ { count: 1 kind: KIND_MODEL } ]\n"
        'parameters: { key: "REPORT_CUSTOM_METRICS" value: { string_value: "true" } }\n'
        'parameters: { key: "ENABLE_VLLM_HEALTH_CHECK" value: { string_value: "true" } }\n'
    )
    engine = {"model": str(tiny_model), "dtype": "float32", "max_model_len": 512, "seed": 0, "enable_lora": True,
              "max_lora_rank": 8, "max_loras": 2, "disable_log_stats": True}
    (version / "model.json").write_text(json.dumps(engine))
    adapters = {name: str(build_tiny_lora(version / "loras" / name, tiny_model, seed=i + 1))
                for i, name in enumerate(LORA_ADAPTERS)}
    (version / "multi_lora.json").write_text(json.dumps({k: str(Path(v).relative_to(version)) for k, v in adapters.items()}))


NUMERIC_MODEL = "numbers"

_NUMERIC_MODEL_PY = """\
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "A").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "B").as_numpy()
            runtime = f"{np.__version__} {sys.prefix}".encode()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", (a + b).astype(np.float32)),
                pb_utils.Tensor("COUNT", np.array([a.size], dtype=np.int32)),
                pb_utils.Tensor("POSITIVE", a > 0),
                pb_utils.Tensor("RUNTIME", np.array([runtime], dtype=np.object_)),
            ]))
        return responses
"""


def add_numeric_model(repo: Path) -> None:
    """A plain (not decoupled) Python model with FP32, INT32, BOOL and BYTES outputs, like NVIDIA's add_sub.

    It says which numpy and interpreter prefix its stub embeds, in its ``RUNTIME`` output.
    """
    version = repo / NUMERIC_MODEL / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(_NUMERIC_MODEL_PY)
    tensors = [("input", "A", "TYPE_FP32", 4), ("input", "B", "TYPE_FP32", 4), ("output", "SUM", "TYPE_FP32", 4),
               ("output", "COUNT", "TYPE_INT32", 1), ("output", "POSITIVE", "TYPE_BOOL", 4),
               ("output", "RUNTIME", "TYPE_STRING", 1)]
    lines = ['backend: "python"', "max_batch_size: 0", "instance_group [ { count: 1 kind: KIND_CPU } ]"]
    lines += [f'{kind} [ {{ name: "{name}" data_type: {dtype} dims: [ {dims} ] }} ]' for kind, name, dtype, dims in tensors]
    (repo / NUMERIC_MODEL / "config.pbtxt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from kit.weights import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_model) -> ServerHandle:
    """The session's real server: CPU repository with the blocking variant, started once."""
    external = os.environ.get("KIT_TEST_HTTP_URL")
    if external:
        grpc = os.environ.get("KIT_TEST_GRPC_URL", "grpc://127.0.0.1:8001")
        metrics = os.environ.get("KIT_TEST_METRICS_URL", external.rsplit(":", 1)[0] + ":8002")
        yield ServerHandle(external, grpc, metrics, None)
        return
    from kit import repository
    from kit.config import DeploymentConfig
    from kit.server import Server

    repo = repository.build(DeploymentConfig.cpu_default(tiny_model), tmp_path_factory.mktemp("repo") / "model_repository")
    add_sample_model(repo, tiny_model)
    add_numeric_model(repo)
    srv = Server(repo)  # log under .kit/logs/, kept after the run
    srv.start()
    try:
        yield ServerHandle(srv.endpoints.http_url, srv.endpoints.grpc_address, srv.endpoints.metrics_url, repo, srv)
    finally:
        srv.stop()


LOG_TAIL_LINES = 150  # of each server's log, attached to the report of a failed integration test
STACK_LINES = 1500  # at most, of the stubs' stacks written to it on failure


def _servers(item) -> list:
    """The kit servers a test used that wrote a log (``Server`` fixtures and the session's handle)."""
    from kit.server import Server

    servers = []
    for value in item.funcargs.values():
        server = value.server if isinstance(value, ServerHandle) else value
        if isinstance(server, Server) and server.log_file.is_file():
            servers.append(server)
    return servers


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` (read from its end: server logs grow large)."""
    size = path.stat().st_size
    return "\n".join(_read_from(path, max(0, size - 200 * lines)).splitlines()[-lines:])


def stub_stacks(server, wait_s: float = 3.0) -> str:
    """Every Python thread's stack in each stub of a running ``server``, as the stubs write them to its log."""
    from kit import processes

    if server.pid is None:
        return ""
    offset = server.log_file.stat().st_size
    if not processes.dump_stub_stacks(server.pid):
        return ""
    time.sleep(wait_s)
    return "\n".join(_read_from(server.log_file, offset).splitlines()[:STACK_LINES])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with its servers' stub stacks and last log lines: CI keeps nothing else."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for server in _servers(item):
            name = server.log_file.name
            if stacks := stub_stacks(server):
                report.sections.append((f"Python stacks of the stubs of {name}", stacks))
            report.sections.append((f"server log {name} (last {LOG_TAIL_LINES} lines)", log_tail(server.log_file)))


OPENAI_TEST_KEY = "kit-test-key"


@pytest.fixture(scope="session")
def openai_url(server) -> str:
    """The OpenAI service (``.../v1``) beside the session's server, requiring the key :data:`OPENAI_TEST_KEY`.

    ``KIT_TEST_OPENAI_URL`` points the tests at a running service instead (it must use that key).
    """
    external = os.environ.get("KIT_TEST_OPENAI_URL")
    if external:
        yield external
        return
    from kit.openai.service import OpenAIService

    with OpenAIService(server.grpc_address, env={"KIT_OPENAI_API_KEY": OPENAI_TEST_KEY}) as api:
        yield api.url
