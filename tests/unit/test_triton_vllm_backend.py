"""Pure parts of kit.triton_models.vllm_backend (Triton's module replaced by a stand-in; no engine)."""

from __future__ import annotations

import asyncio
import collections
import importlib
import json
import sys
import threading
import types
from types import SimpleNamespace

import pytest

from kit.exceptions import RequestError


class ModelException(Exception):  # noqa: N818 - stands in for pb_utils.TritonModelException
    pass


@pytest.fixture
def backend(monkeypatch):
    stand_in = types.ModuleType("triton_python_backend_utils")
    stand_in.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    stand_in.TritonModelException = ModelException
    stand_in.TritonError = SimpleNamespace(UNAVAILABLE="UNAVAILABLE", INVALID_ARG="INVALID_ARG")
    stand_in.Logger = SimpleNamespace(log_error=lambda m: None, log_info=lambda m: None)
    stand_in.unloaded = []
    stand_in.unload_model = stand_in.unloaded.append
    for name in ("kit.triton_models.vllm_backend", "kit.triton_models.tensors", "kit.triton_models.engine_metrics"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    module = importlib.import_module("kit.triton_models.vllm_backend")
    yield module
    for name in ("kit.triton_models.vllm_backend", "kit.triton_models.tensors", "kit.triton_models.engine_metrics"):
        sys.modules.pop(name, None)  # nobody else gets the stand-in's versions


def test_loras_are_read_only_when_enabled(backend, tmp_path):
    """enable_lora (bool or text) + multi_lora.json → name → absolute folder; without it, no LoRA."""
    (tmp_path / "multi_lora.json").write_text(json.dumps({"doll": "loras/doll", "sheep": "/abs/sheep"}))
    assert backend.read_loras({}, tmp_path) == {}
    assert backend.read_loras({"enable_lora": "false"}, tmp_path) == {}
    loras = backend.read_loras({"enable_lora": "True"}, tmp_path)
    assert loras == {"doll": str(tmp_path / "loras/doll"), "sheep": "/abs/sheep"}


@pytest.mark.parametrize("content, message", [
    (None, "multi_lora.json is missing"),
    ("{oops", "not valid JSON"),
    ('["doll"]', "must map adapter names"),
])
def test_a_bad_multi_lora_file_fails_the_load_saying_what_to_fix(backend, tmp_path, content, message):
    """LoRA enabled with a missing, broken or mis-shaped multi_lora.json refuses to load, naming the file."""
    if content is not None:
        (tmp_path / "multi_lora.json").write_text(content)
    with pytest.raises(ModelException, match=message):
        backend.read_loras({"enable_lora": True}, tmp_path)


def test_lora_requests_use_nvidias_error_texts(backend):
    """An unknown adapter or LoRA off is a RequestError with NVIDIA's texts; a known one gets a 1-based id."""
    pytest.importorskip("vllm")
    model = backend.TritonPythonModel()
    model.loras = {}
    with pytest.raises(RequestError, match="^LoRA feature is not enabled.$"):
        model._lora_request("doll")
    model.loras = {"doll": "/a", "sheep": "/b"}
    with pytest.raises(RequestError, match=r"LoRA x is not supported, we currently support \['doll', 'sheep'\]"):
        model._lora_request("x")
    request = model._lora_request("sheep")
    assert (request.lora_name, request.lora_int_id, request.lora_path) == ("sheep", 2, "/b")


def test_a_failed_health_check_unloads_the_model_once(backend):
    """The first failing check marks the engine unhealthy and asks Triton to unload; later checks stay failed."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    calls = []

    async def check_health():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("engine died")

    model = backend.TritonPythonModel()
    model.engine, model.loop, model.healthy = SimpleNamespace(check_health=check_health), loop, True
    model.logger, model.labels = backend.pb_utils.Logger, {"model": "m"}
    try:
        assert model._check_health() is True
        assert model._check_health() is False
        assert model._check_health() is False
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert len(calls) == 2 and backend.pb_utils.unloaded == ["m"]


def test_unloading_waits_for_the_requests_in_flight(backend, monkeypatch):
    """finalize() shuts the engine down only once the last job in flight has been answered."""
    monkeypatch.setattr(backend.time, "sleep", lambda s: model.jobs.pop("a", None))  # answered while we wait
    order = []
    model = backend.TritonPythonModel()
    model.jobs, model.inbox = {"a": object()}, collections.deque()
    model.logger = SimpleNamespace(log_info=lambda m: order.append("waiting" if "waiting" in m else "info"))
    model.watcher = model.pump = model.mailbox = SimpleNamespace(close=lambda: None)
    model.engine = SimpleNamespace(shutdown=lambda: order.append(f"shutdown with {len(model.jobs)} jobs"))
    model.metrics = None
    model.loop = SimpleNamespace(call_soon_threadsafe=lambda f: None, stop=None)
    model.thread = SimpleNamespace(join=lambda timeout: None)
    model.finalize()
    assert order == ["waiting", "info", "shutdown with 0 jobs"]


def test_an_abort_that_overtakes_its_request_cancels_it_on_arrival(backend, monkeypatch):
    """A BLS abort for an id not yet running is kept EARLY_ABORT_S; the request meets it and never
    reaches the engine. An older one is forgotten, so the ids of finished requests do not pile up."""
    backend.pb_utils.TritonError.CANCELLED = "CANCELLED"
    clock = [100.0]
    monkeypatch.setattr(backend.time, "monotonic", lambda: clock[0])
    finals = []
    model = backend.TritonPythonModel()
    model.jobs, model.early_aborts = {}, {}
    model.logger = backend.pb_utils.Logger
    model.watcher = SimpleNamespace(unwatch=lambda request_id: None)
    model.pump = SimpleNamespace(put=lambda request_id, item, final=False: finals.append((request_id, item)))
    model.engine = None  # generating would fail on it

    assert model._abort("finished-long-ago") is False
    clock[0] += backend.EARLY_ABORT_S + 1
    assert model._abort("early") is False
    assert list(model.early_aborts) == ["early"]
    job = backend.Job(request_id="k1", name="early", prompt="p", stream=False, prepend_prompt=False,
                      params={}, extras=set())
    asyncio.run(model._generate(job))
    assert finals == [("k1", backend.Failure(backend.CANCELLED_MESSAGE, "CANCELLED"))]
    assert model.early_aborts == {}


class FakeRequest:
    """A Triton request as the backend reads it before parsing: parameters and a response sender."""

    def __init__(self, name, parameters="{}", send_fails=False):
        self.name, self._parameters, self.sent, self.send_fails = name, parameters, [], send_fails

    def parameters(self):
        return self._parameters

    def get_response_sender(self):
        return SimpleNamespace(send=self._send, is_cancelled=lambda: False)

    def _send(self, response=None, flags=0):
        if self.send_fails:
            raise RuntimeError("the client is gone")
        self.sent.append((response, flags))


@pytest.fixture
def admitting(backend):
    """A model whose loop only records what is scheduled on it, and whose parser names the request."""
    model = backend.TritonPythonModel()
    model.metrics, model.health_check = None, False
    model.jobs, model.inbox, model.admitting = {}, collections.deque(), False
    wakeups, started = [], []
    model.loop = SimpleNamespace(call_soon_threadsafe=lambda f, *a: wakeups.append(f),
                                 create_task=lambda coroutine: (started.append(coroutine.cr_frame.f_locals["job"]),
                                                                coroutine.close()))
    model.watcher = SimpleNamespace(watch=lambda key, is_cancelled: None)

    def parse(request):
        if request.name == "bad":
            raise RequestError("input 'text_input' is required")
        return backend.Job(request_id="", prompt=request.name, stream=False, prepend_prompt=False,
                           params={}, extras=set())

    model._parse = parse
    return model, wakeups, started


def test_a_burst_of_requests_wakes_the_engine_loop_once(admitting):
    """execute() only queues: three arrivals while the loop is busy cost one wake-up, and the loop
    then starts all three in arrival order; an arrival after that wakes it again."""
    model, wakeups, started = admitting
    requests = [FakeRequest(n) for n in ("a", "b", "c")]
    for request in requests:
        assert model.execute([request]) is None
    assert len(wakeups) == 1 and list(model.inbox) == requests and not started
    wakeups.pop()()
    assert [job.prompt for job in started] == ["a", "b", "c"] and not model.inbox
    assert sorted(job.prompt for job in model.jobs.values()) == ["a", "b", "c"]
    model.execute([FakeRequest("d")])
    assert len(wakeups) == 1


def test_a_bad_request_is_answered_on_the_loop_and_the_next_one_still_starts(admitting, backend, monkeypatch):
    """A request that cannot be read gets its error from the loop; the ones around it start."""
    model, wakeups, started = admitting
    errors = []
    monkeypatch.setattr(backend.tensors, "send_error", lambda sender, message, code=None: errors.append(message))
    model.execute([FakeRequest("a"), FakeRequest("bad"), FakeRequest("c")])
    wakeups.pop()()
    assert errors == ["input 'text_input' is required"]
    assert [job.prompt for job in started] == ["a", "c"]


def test_an_abort_request_cancels_on_the_loop_and_is_answered_at_once(admitting, backend):
    """A BLS abort (its id in the request's parameters) cancels that id and gets one final, empty response."""
    model, wakeups, started = admitting
    cancelled = []
    model._abort = cancelled.append
    abort = FakeRequest("abort", json.dumps({backend.ABORT_PARAMETER: "r-7"}))
    model.execute([abort])
    wakeups.pop()()
    assert cancelled == ["r-7"] and abort.sent == [(None, backend.tensors.FINAL)] and not started


def test_an_answer_that_cannot_be_sent_is_logged_and_the_next_request_still_starts(admitting, backend):
    """An abort whose acknowledgement fails to send (its caller gone) must not strand the requests behind it."""
    model, wakeups, started = admitting
    logged = []
    model._abort = lambda name: False
    model.logger = SimpleNamespace(log_error=logged.append)
    abort = FakeRequest("abort", json.dumps({backend.ABORT_PARAMETER: "r-8"}), send_fails=True)
    model.execute([abort, FakeRequest("b")])
    wakeups.pop()()
    assert [job.prompt for job in started] == ["b"] and not model.inbox
    assert len(logged) == 1 and "the client is gone" in logged[0]


def test_two_requests_with_one_kit_request_id_are_two_jobs_and_an_abort_by_that_id_ends_both(admitting, backend):
    """Jobs are keyed by the backend's own id: a shared kit_request_id neither overwrites a job nor
    lets the watcher cancel the wrong one; an abort naming the id cancels both."""
    model, wakeups, started = admitting
    model.logger = backend.pb_utils.Logger
    same = json.dumps({backend.ID_PARAMETER: "shared"})
    model.execute([FakeRequest("a", same), FakeRequest("b", same), FakeRequest("c")])
    wakeups.pop()()
    assert len(model.jobs) == 3 and len({job.request_id for job in started}) == 3
    assert sorted(job.name for job in started) == ["", "shared", "shared"]
    first, second, other = started
    model._cancel_on_loop(first.request_id)  # the watcher saw the first one's client cancel
    assert (first.cancelled, second.cancelled, other.cancelled) == (True, False, False)
    assert model._abort("shared") is True
    assert second.cancelled and not other.cancelled
    assert model._abort("") is False and not other.cancelled  # an empty id names no request (nor is kept)


def test_the_engine_loop_carries_out_the_pipelines_aborts_from_its_folder(backend, tmp_path):
    """A posted id that names a running job cancels it and its file goes; one that names nothing is
    kept for a request still on its way; a folder that cannot be read is logged and read again later."""
    model = backend.TritonPythonModel()
    model.logger = SimpleNamespace(log_info=lambda m: None, log_error=[].append)
    model.jobs, model.early_aborts, model.closing, model.mailbox_error = {}, {}, False, ""
    model.mailbox = backend.aborts.AbortMailbox(tmp_path)
    later = []
    model.loop = SimpleNamespace(call_later=lambda delay, f: later.append((delay, f)))
    job = backend.Job(request_id="k", name="running", prompt="p", stream=True, prepend_prompt=False,
                      params={}, extras=set())
    model.jobs["k"] = job
    poster = backend.aborts.AbortMailbox(tmp_path)
    poster.post("running")
    poster.post("coming")
    model._read_mailbox()
    assert job.cancelled and list(model.early_aborts) == ["coming"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coming"]
    assert later == [(backend.aborts.POLL_S, model._read_mailbox)]

    errors = []
    model.logger.log_error = errors.append
    model.mailbox.read = lambda: (_ for _ in ()).throw(PermissionError("denied"))
    model._read_mailbox()
    model._read_mailbox()
    assert len(errors) == 1 and "denied" in errors[0] and len(later) == 3  # logged once, read again
    model.closing = True
    model._read_mailbox()
    assert len(later) == 3  # an unloading model stops reading
