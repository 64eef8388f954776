"""Show that Triton 2.51's Python backend crashes the server when a BLS caller aborts a stream it reads.

The kit's pipeline cancelled its LLM request with a second BLS request (``kit_abort``; 2.51's BLS
response iterators have no ``cancel()``), and the LLM then ended the aborted stream at once. Under
bursts of cancelled client streams that pattern killed ``tritonserver`` itself: SIGSEGV or SIGABRT
in the server process, with backtraces in the Python backend's BLS path (``ResponseAlloc`` or
``InferPayload::Callback`` of a freed per-stream payload, ``std::bad_weak_ptr`` in
``InferResponseComplete``) or heap corruption seen elsewhere (gRPC ``Alarm`` refcount, glibc mutex
and malloc assertions). This script shows it without any kit code in the server: two small
decoupled models, ``front`` (one worker thread per request reading a BLS stream from ``echo``,
one watcher thread asking ``is_cancelled()`` every 0.25 s) and ``echo`` (streams words 5 ms apart)::

    python benchmarks/bls_abort_crash.py --abort bls     # the kit's pattern: the server dies (minutes)
    python benchmarks/bls_abort_crash.py --abort none    # watcher only, streams run out: no crash seen
    python benchmarks/bls_abort_crash.py --abort file    # abort through a file instead of BLS
    python benchmarks/bls_abort_crash.py --target kit    # the kit's own pipeline and vLLM, tiny model
    python benchmarks/bls_abort_crash.py --target detached --concurrency 256   # a running `kit serve --detach`

The kit's pipeline aborts through a file since (``kit.aborts``); ``--target kit`` sends the same
bursts through ``llama_bls_ensemble`` of the CPU repository to show that it holds.

Each burst sends ``--concurrency`` streams to ``front``, each on a gRPC stream of its own, and
cancels them (``stop_stream(cancel_requests=True)``) right after sending, after the first
response, after the final one, or after a random delay. It exits 1 once the server died (or, with
``--target detached``, was stopped by its supervisor because it stopped answering).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import repository
from kit import server as srv
from kit.config import PIPELINE_MODEL, DeploymentConfig
from kit.exceptions import KitError, ServerError, exit_with
from kit.health import LIVE_PATH, probe

CONFIG = """backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "text_input" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] }}
]
output [ {{ name: "text_output" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
"""

ECHO = """# Streams max_tokens words 5 ms apart; ends a stream that a caller aborted with a CANCELLED error.
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
ABORTS = os.environ.get("ABORT_DIR", "")


class TritonPythonModel:
    def initialize(self, args):
        self.aborted = set()

    def execute(self, requests):
        for request in requests:
            params = json.loads(request.parameters() or "{}")
            if "abort" in params:  # the caller aborts its stream `abort` with a request of its own
                self.aborted.add(params["abort"])
                request.get_response_sender().send(flags=FINAL)
                continue
            count = int(pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy().reshape(-1)[0])
            threading.Thread(target=self.stream, args=(request.get_response_sender(), count, params.get("id")),
                             daemon=True).start()
        return None

    def aborted_now(self, rid):
        if rid in self.aborted:
            self.aborted.discard(rid)
            return True
        path = os.path.join(ABORTS, rid) if ABORTS and rid else ""
        if path and os.path.exists(path):
            os.unlink(path)
            return True
        return False

    def stream(self, sender, count, rid):
        for i in range(count):
            time.sleep(0.005)
            if self.aborted_now(rid):
                error = pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                return
            text = pb_utils.Tensor("text_output", np.array([f" word{i}".encode()], dtype=np.object_))
            sender.send(pb_utils.InferenceResponse(output_tensors=[text]), flags=FINAL if i == count - 1 else 0)
"""

FRONT = """# Reads echo through BLS, one worker thread per request; a watcher aborts the streams of cancelled clients.
import collections
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
MODE = os.environ.get("ABORT_MODE", "bls")
ABORTS = os.environ.get("ABORT_DIR", "")


class TritonPythonModel:
    def initialize(self, args):
        self.pool = ThreadPoolExecutor(max_workers=256)
        self.lock = threading.Lock()  # held while asking is_cancelled(): no ask after a request's final send
        self.watched = {}
        self.kept = collections.deque()  # finished iterators, released 2 s later by a Python thread
        threading.Thread(target=self.watch, daemon=True).start()

    def execute(self, requests):
        for request in requests:
            self.pool.submit(self.handle, request, request.get_response_sender())
        return None

    def handle(self, request, sender):
        rid = uuid.uuid4().hex
        count = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy()
        bls = pb_utils.InferenceRequest(
            model_name="echo",
            inputs=[pb_utils.Tensor("text_input", np.array([b"hi"], dtype=np.object_)),
                    pb_utils.Tensor("max_tokens", count)],
            requested_output_names=["text_output"], parameters={"id": rid})
        with self.lock:
            self.watched[rid] = sender
        failure = None
        responses = bls.exec(decoupled=True)
        try:
            for response in responses:  # read to the end: abandoning a BLS stream is a crash of its own
                if response.has_error():
                    failure = response.error().message()
                    break  # an error is the stream's final response
                out = pb_utils.get_output_tensor_by_name(response, "text_output")
                if out is not None:
                    sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
        finally:
            with self.lock:
                self.watched.pop(rid, None)
            self.keep(responses)
        if failure is None:
            sender.send(flags=FINAL)
        else:
            error = pb_utils.TritonError(failure, pb_utils.TritonError.CANCELLED)
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def keep(self, iterator):
        now = time.monotonic()
        with self.lock:
            self.kept.append((now + 2.0, iterator))
            expired = []
            while self.kept and self.kept[0][0] <= now:
                expired.append(self.kept.popleft())
        del expired

    def watch(self):
        while True:
            time.sleep(0.25)
            with self.lock:
                cancelled = [rid for rid, sender in list(self.watched.items()) if sender.is_cancelled()]
                for rid in cancelled:
                    self.watched.pop(rid, None)
            for rid in cancelled:
                if MODE == "file":
                    open(os.path.join(ABORTS, rid), "w").close()
                elif MODE == "bls":
                    abort = pb_utils.InferenceRequest(
                        model_name="echo",
                        inputs=[pb_utils.Tensor("text_input", np.array([b""], dtype=np.object_)),
                                pb_utils.Tensor("max_tokens", np.array([0], dtype=np.int32))],
                        requested_output_names=["text_output"], parameters={"abort": rid})
                    answers = abort.exec(decoupled=True)
                    for _ in answers:
                        pass
                    self.keep(answers)
"""


def write_repository(root: Path) -> Path:
    for name, code, count in (("echo", ECHO, 1), ("front", FRONT, 2)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(count=count))
        (root / name / "1" / "model.py").write_text(code)
    return root


def kit_repository(root: Path) -> Path:
    from kit.weights import build_tiny_model

    return repository.build(DeploymentConfig.cpu_default(build_tiny_model(), blocking_variant=False), root)


def stream_request(target: str, max_tokens: int) -> tuple[str, list]:
    """The model and gRPC inputs of one stream: ``front``'s, or the kit pipeline's (a streamed chat answer)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    if target == "kit":
        from kit.client import grpc_inputs, request_inputs

        inputs = request_inputs(PIPELINE_MODEL, "tell me a long story", stream=True, max_tokens=max_tokens,
                                sampling={"ignore_eos": True})
        return PIPELINE_MODEL, grpc_inputs(inputs)
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=np.object_))
    count = grpcclient.InferInput("max_tokens", [1], "INT32")
    count.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    return "front", [text, count]


def one_stream(address: str, target: str, max_tokens: int, timing: str, delay_s: float) -> None:
    """One request on a gRPC stream of its own, cancelled with the stream at ``timing``."""
    import tritonclient.grpc as grpcclient

    first, final = threading.Event(), threading.Event()

    def on_response(result, error):
        first.set()
        if error is not None:
            final.set()
            return
        flag = result.get_response().parameters.get("triton_final_response")
        if flag is not None and flag.bool_param:
            final.set()

    model, inputs = stream_request(target, max_tokens)
    client = grpcclient.InferenceServerClient(address)
    try:
        client.start_stream(callback=on_response)
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        if timing == "first":
            first.wait(5)
        elif timing == "final":
            final.wait(5)
        elif timing == "delay":
            time.sleep(delay_s)
        client.stop_stream(cancel_requests=True)
    except Exception:  # noqa: BLE001 - a dead server is found by the caller
        pass
    finally:
        client.close()


def live(url: str) -> bool:
    return probe(url + LIVE_PATH, timeout=5)[0] == 200


def bursts(grpc_address: str, http_url: str, log: Path, target: str, *, minutes: float, concurrency: int,
           rng: random.Random) -> int:
    """Send bursts of cancelled streams for ``minutes``; 1 as soon as the server died, else 0."""
    end, count = time.monotonic() + minutes * 60, 0
    while time.monotonic() < end:
        threads = [threading.Thread(target=one_stream, args=(
            grpc_address, target, rng.choice([4, 16, 64, 200]),
            rng.choice(("sent", "first", "final", "delay")), rng.uniform(0, 0.4)))
            for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        count += 1
        signals = re.findall(r"Signal \((\d+)\) received", log.read_text(errors="replace"))
        if signals or not live(http_url):
            how = ("was stopped (SIGTERM: a supervisor restarts a server that stopped answering)"
                   if signals[-1:] == ["15"] else "died")
            print(f"the server {how} in burst {count} ({count * concurrency} cancelled streams); see {log}",
                  flush=True)
            return 1
        if count % 10 == 0:
            print(f"{count} bursts, {count * concurrency} cancelled streams, server alive", flush=True)
    print(f"no crash in {count} bursts ({count * concurrency} cancelled streams)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=("models", "kit", "detached"), default="models",
                   help="front and echo (no kit code), the kit's CPU repository with its tiny model, or the "
                        "pipeline of the server `kit serve --detach` started (e.g. on a GPU host)")
    p.add_argument("--abort", choices=("bls", "none", "file"), default="bls",
                   help="how front stops echo for a cancelled client: a BLS request (the kit's old way), not at "
                        "all, or through a file (front only)")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=32, help="cancelled streams per burst")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    load = {"minutes": args.minutes, "concurrency": args.concurrency, "rng": rng}
    if args.target == "detached":
        from kit.detached import read_state

        state = read_state()
        if state is None:
            raise ServerError("no detached server: start one with `python -m kit serve --detach`")
        print(f"target=detached server {state.pid}; log {state.log}", flush=True)
        return bursts(state.endpoints.grpc_address, state.endpoints.http_url, Path(state.log), "kit", **load)
    with tempfile.TemporaryDirectory(prefix="kit-bls-abort-") as tmp:
        aborts = Path(tmp) / "aborts"
        aborts.mkdir()
        if args.target == "kit":
            repo = kit_repository(Path(tmp) / "model_repository")
        else:
            repo = write_repository(Path(tmp) / "model_repository")
        env = {"ABORT_MODE": args.abort, "ABORT_DIR": str(aborts)}
        with srv.Server(repo, env=env) as server:
            print(f"target={args.target} abort={'kit' if args.target == 'kit' else args.abort}; "
                  f"log {server.log_file}", flush=True)
            return bursts(server.endpoints.grpc_address, server.endpoints.http_url, server.log_file, args.target,
                          **load)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KitError as exc:
        sys.exit(exit_with(exc))
