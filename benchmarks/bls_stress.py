"""Stress the guarded pipeline's BLS plumbing, without an engine, and count stub deaths.

The pipeline's stubs crashed on Python 3.12 (``segfault at 10`` in libpython) when Triton
2.51's stub released a finished BLS response iterator without the GIL; see
``IteratorKeeper`` in ``kit/triton_models/pipeline.py``. An engine is not needed to show
it, and vLLM's start-up would only slow the check down, so this script builds the CPU
repository, puts a stand-in streaming model (one asyncio loop, like the kit's vLLM
backend; fixed-rate deltas) in place of ``llama3-8b-instruct``, starts the real
``tritonserver`` with the interpreter running this script, and sends rounds of
concurrent streams through ``llama_bls_ensemble``::

    python benchmarks/bls_stress.py --rounds 10 --concurrency 64           # expect 0 stub deaths
    KIT_BLS_KEEP_S=0 python benchmarks/bls_stress.py --rounds 10           # the crash, with a 3.12 stub

It prints each round's errors and the pipeline stubs still alive, and exits 1 if any
stub died. This is a diagnostic, not a benchmark of the kit: the stand-in model is not vLLM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import repository
from kit import server as srv
from kit.config import LLM_MODEL, PIPELINE_MODEL, DeploymentConfig
from kit.exceptions import KitError, exit_with
from kit.health import lost_stubs
from kit.perf import load
from kit.perf.prompts import default_prompts
from kit.weights import build_tiny_model

STAND_IN = """# Stand-in for llama3-8b-instruct in benchmarks/bls_stress.py: streams max_tokens deltas.
import os
import sys

for _path in os.environ.get("KIT_PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

import asyncio
import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

STEP_S = 0.005
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            if "kit_abort" in json.loads(request.parameters() or "{}"):
                sender.send(flags=FINAL)
                continue
            tensor = pb_utils.get_input_tensor_by_name(request, "sampling_parameters")
            sampling = json.loads(tensor.as_numpy().reshape(-1)[0]) if tensor is not None else {}
            asyncio.run_coroutine_threadsafe(self.stream(sender, int(sampling.get("max_tokens", 16))), self.loop)
        return None

    async def stream(self, sender, count):
        for i in range(count):
            await asyncio.sleep(STEP_S)
            text = pb_utils.Tensor("text_output", np.array([f" word{i}".encode()], dtype=np.object_))
            sender.send(pb_utils.InferenceResponse(output_tensors=[text]), flags=FINAL if i == count - 1 else 0)
"""


def stand_in_repository(out: Path, pipeline_instances: int) -> Path:
    config = DeploymentConfig.cpu_default(build_tiny_model(), pipeline_instances=pipeline_instances,
                                          blocking_variant=False)
    repo = repository.build(config, out)
    llm = repo / LLM_MODEL
    text = (llm / "config.pbtxt").read_text().replace('backend: "vllm"', 'backend: "python"')
    (llm / "config.pbtxt").write_text(text)
    (llm / "1" / "model.json").unlink(missing_ok=True)
    (llm / "1" / "model.py").write_text(STAND_IN)
    return repo


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=50)
    p.add_argument("--instances", type=int, default=8, help="pipeline instances (stub processes)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = stand_in_repository(Path(tmp) / "model_repository", args.instances)
        with srv.Server(repo) as server:
            models = [{"name": PIPELINE_MODEL, "state": "READY"}]
            prompts = default_prompts(2 * args.concurrency)
            print(f"Python {sys.version.split()[0]}, {args.instances} pipeline stubs; log {server.log_file}", flush=True)
            for round_ in range(args.rounds):
                started = time.monotonic()
                frame = load.run_level(server.endpoints.grpc_address, PIPELINE_MODEL, concurrency=args.concurrency,
                                       requests=2 * args.concurrency, max_tokens=args.max_tokens, prompts=prompts,
                                       progress=False, timeout_s=30)
                failed = frame[frame["error"] != ""]
                dead = lost_stubs(server.pid, repo, models)
                print(f"round {round_}: {len(frame)} streams in {time.monotonic() - started:.1f}s, "
                      f"{len(failed)} errors {sorted(set(failed['error']))[:2]}"
                      f"{'; ' + dead[PIPELINE_MODEL] if dead else ''}", flush=True)
                if dead:
                    return 1
    print("no pipeline stub died")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KitError as exc:
        sys.exit(exit_with(exc))
