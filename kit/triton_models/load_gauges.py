"""The guarded pipeline's load, as gauges on Triton's metrics port: the autoscaling signal.

NVIDIA's vLLM backend in the Docker image exports counters and histograms only, so a
queue gauge such as ``vllm:num_requests_waiting`` does not exist there. The pipeline is
the kit's own code in every runtime (the pip-installed server and NVIDIA's image), so it
counts its own load:

* ``kit_pipeline_requests_in_flight{model,instance}``: requests accepted and not yet answered;
* ``kit_pipeline_waiting_first_token{model,instance}``: requests still waiting for the LLM's
  first token (queued in the engine or in prefill). A lasting non-zero value means the
  engine cannot take more work: that is what ``deploy/k8s/hpa.yaml`` scales on.

Each model instance (a stub process of its own) sets its own series: two instances with
the same labels would overwrite each other's value. The pod's load is the sum.

Worker threads only change plain integers under a lock; one thread hands the values to
Triton every :data:`FLUSH_S` seconds (Triton 2.51's Python backend crashed when many
threads called its metric API at once).
"""

from __future__ import annotations

import threading

FLUSH_S = 0.5
NAMES = {
    "in_flight": ("kit_pipeline_requests_in_flight", "Requests accepted by the guarded pipeline and not yet answered"),
    "waiting": ("kit_pipeline_waiting_first_token", "Pipeline requests waiting for the LLM's first token"),
}


class LoadGauges:
    def __init__(self, model: str, instance: str):
        import triton_python_backend_utils as pb_utils  # only inside Triton's stub (NAMES is read outside)

        self.families = []  # Triton needs each family to outlive its metrics
        self.metrics = {}
        for key, (name, description) in NAMES.items():
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.GAUGE)
            self.families.append(family)
            self.metrics[key] = family.Metric(labels={"model": model, "instance": instance})
        self.values = dict.fromkeys(NAMES, 0)
        self.lock = threading.Lock()
        self.flushed = dict(self.values)  # Triton starts every gauge at 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="load-gauges", daemon=True)
        self.thread.start()

    def add(self, key: str, delta: int) -> None:
        with self.lock:
            self.values[key] += delta

    def start(self) -> "RequestLoad":
        """Count one accepted request as in flight and waiting for its first token."""
        self.add("in_flight", 1)
        self.add("waiting", 1)
        return RequestLoad(self)

    def flush(self) -> None:
        """Hand the values that changed since the last flush to Triton (nothing while none changed: a
        metric call while the model's ``initialize`` still runs kept Triton 2.51 from finishing the load)."""
        with self.lock:
            changed = {k: v for k, v in self.values.items() if v != self.flushed.get(k)}
            self.flushed.update(changed)
        for key, value in changed.items():
            self.metrics[key].set(value)

    def _run(self) -> None:
        while not self.stopped.wait(FLUSH_S):
            self.flush()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.metrics.clear()  # the metrics before their families (the other order crashes the stub)
        self.families.clear()


class RequestLoad:
    """One request's share of the gauges: ``first_token()`` once the LLM answers, ``done()`` at the end."""

    __slots__ = ("_gauges", "_waiting")

    def __init__(self, gauges: LoadGauges):
        self._gauges = gauges
        self._waiting = True

    def first_token(self) -> None:
        if self._waiting:
            self._waiting = False
            self._gauges.add("waiting", -1)

    def done(self) -> None:
        self.first_token()  # a request refused or failed before any token stops waiting too
        self._gauges.add("in_flight", -1)
