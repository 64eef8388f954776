"""vLLM engine statistics exported on Triton's metrics port.

vLLM calls a stat logger once per engine step with scheduler and iteration
statistics; :class:`EngineMetrics` turns them into Triton custom metrics
(``pb_utils.MetricFamily``) with the names and histogram buckets NVIDIA's vLLM
backend exports (its ``src/utils/metrics.py`` and README, "Triton Metrics"), so
dashboards work unchanged:

* counters ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``;
* histograms ``vllm:time_to_first_token_seconds``,
  ``vllm:time_per_output_token_seconds`` (one observation per token after the
  first: vLLM's inter-token latencies), ``vllm:e2e_request_latency_seconds``,
  ``vllm:request_prompt_tokens``, ``vllm:request_generation_tokens``,
  ``vllm:request_params_n``, ``vllm:request_params_max_tokens``;
* the kit's extras: gauges ``vllm:num_requests_running`` / ``_waiting`` and
  counters ``vllm:num_preemptions_total``, ``vllm:request_success_total``.

The engine's loop only adds to plain pending values under a lock and wakes one
flusher thread, which hands them to Triton (each Triton metric call is a round
trip from the stub to the server, and many threads calling at once crashed
Triton 2.51's Python backend); steps recorded during a flush are reported
together by the next. Values reach the metrics port right after the step that
produced them, as with NVIDIA's backend, so a client that reads them right
after its answer sees them (NVIDIA's metrics test does).
"""

from __future__ import annotations

import threading

import triton_python_backend_utils as pb_utils

# NVIDIA's buckets (seconds), themselves vLLM's of the time.
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
E2E_BUCKETS = [1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0]
N_BUCKETS = [1, 2, 5, 10, 20]


def buckets_1_2_5(maximum: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``maximum`` (vLLM's ``build_1_2_5_buckets``: token counts)."""
    out, exponent = [], 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > maximum:
                return out
            out.append(value)
        exponent += 1


def close_metrics(holder) -> None:
    """Delete every ``Metric`` attribute of ``holder``, then its ``families``."""
    for name in [n for n in vars(holder) if n != "families"]:
        delattr(holder, name)
    holder.families.clear()


class _Metrics:
    """The Triton metric objects (kept apart so that closing them leaves the flusher's state alone)."""

    def __init__(self, labels: dict[str, str], max_model_len: int):
        # Triton needs each MetricFamily to outlive its Metric objects: keep both.
        self.families = []

        def family(name, description, kind, buckets=None):
            self.families.append(pb_utils.MetricFamily(name=name, description=description, kind=kind))
            if buckets is None:
                return self.families[-1].Metric(labels=labels)
            return self.families[-1].Metric(labels=labels, buckets=buckets)

        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        histogram = pb_utils.MetricFamily.HISTOGRAM
        tokens = buckets_1_2_5(max_model_len)
        self.running = family("vllm:num_requests_running", "Requests in the engine's running batch", gauge)
        self.waiting = family("vllm:num_requests_waiting", "Requests waiting to be scheduled", gauge)
        self.prompt_tokens = family("vllm:prompt_tokens_total", "Number of prefill tokens processed.", counter)
        self.generation_tokens = family(
            "vllm:generation_tokens_total", "Number of generation tokens processed.", counter
        )
        self.preemptions = family("vllm:num_preemptions_total", "Requests preempted", counter)
        self.finished = family("vllm:request_success_total", "Requests finished", counter)
        self.ttft = family("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                           histogram, TTFT_BUCKETS)
        self.tpot = family("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                           histogram, TPOT_BUCKETS)
        self.e2e = family("vllm:e2e_request_latency_seconds",
                          "Histogram of end to end request latency in seconds.", histogram, E2E_BUCKETS)
        self.request_prompt = family("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                                     histogram, tokens)
        self.request_generation = family("vllm:request_generation_tokens",
                                         "Number of generation tokens processed.", histogram, tokens)
        self.params_n = family("vllm:request_params_n", "Histogram of the n request parameter.", histogram, N_BUCKETS)
        self.params_max_tokens = family("vllm:request_params_max_tokens",
                                        "Histogram of the max_tokens request parameter.", histogram, tokens)


COUNTERS = ("prompt_tokens", "generation_tokens", "preemptions", "finished")
HISTOGRAMS = ("ttft", "tpot", "e2e", "request_prompt", "request_generation", "params_n", "params_max_tokens")


class EngineMetrics:
    """Collects vLLM's statistics; one flusher thread reports them to Triton, woken by each step."""

    def __init__(self, labels: dict[str, str], max_model_len: int):
        self.metrics = _Metrics(labels, max_model_len)
        self.lock = threading.Lock()
        self._reset()
        self.gauges: dict[str, int] = {}
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reporting; call it once the model's ``initialize`` returned (e.g. on the first request).

        With the flusher reporting the engine's start-up statistics while ``initialize`` was still
        running, the model never finished loading on Triton 2.51: values recorded before
        ``start`` wait for it.
        """
        self.thread = threading.Thread(target=self._run, name="vllm-metrics", daemon=True)
        self.thread.start()
        self.wake.set()

    def _reset(self) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.observed: dict[str, list[float]] = {name: [] for name in HISTOGRAMS}

    def record(self, scheduler_stats, iteration_stats) -> None:
        """Add one engine step's statistics to the pending values (called on the engine's loop)."""
        self._add(scheduler_stats, iteration_stats)
        self.wake.set()  # also for a step with scheduler statistics only: the gauges fall back to 0

    def _add(self, scheduler_stats, iteration_stats) -> None:
        with self.lock:
            if scheduler_stats is not None:
                self.gauges["running"] = scheduler_stats.num_running_reqs
                self.gauges["waiting"] = scheduler_stats.num_waiting_reqs
            if iteration_stats is None:
                return
            finished = iteration_stats.finished_requests
            self.counts["prompt_tokens"] += iteration_stats.num_prompt_tokens
            self.counts["generation_tokens"] += iteration_stats.num_generation_tokens
            self.counts["preemptions"] += iteration_stats.num_preempted_reqs
            self.counts["finished"] += len(finished)
            seen = self.observed
            seen["ttft"] += iteration_stats.time_to_first_tokens_iter
            seen["tpot"] += iteration_stats.inter_token_latencies_iter
            seen["params_n"] += iteration_stats.n_params_iter
            for request in finished:
                seen["e2e"].append(request.e2e_latency)
                seen["request_prompt"].append(request.num_prompt_tokens)
                seen["request_generation"].append(request.num_generation_tokens)
                if request.max_tokens_param:
                    seen["params_max_tokens"].append(request.max_tokens_param)

    def flush(self) -> None:
        """Hand the pending values to Triton (the flusher thread's work; also called on close)."""
        with self.lock:
            counts, observed, gauges = self.counts, self.observed, dict(self.gauges)
            self._reset()
        metrics = self.metrics
        for name, value in gauges.items():
            getattr(metrics, name).set(value)
        for name, value in counts.items():
            if value:
                getattr(metrics, name).increment(value)
        for name, values in observed.items():
            histogram = getattr(metrics, name)
            for value in values:
                histogram.observe(float(value))

    def _run(self) -> None:
        while True:
            self.wake.wait()
            if self.stopped.is_set():
                return
            self.wake.clear()
            try:
                self.flush()  # steps recorded while it runs are reported together by the next one
            except Exception as exc:  # noqa: BLE001 - metrics must never stop serving
                pb_utils.Logger.log_warn(f"engine metrics not reported: {exc}")

    def close(self) -> None:
        """Stop the flusher, report what is pending, then drop the metrics before their families."""
        self.stopped.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.flush()
        close_metrics(self.metrics)

    def logger_factory(self):
        """A vLLM ``StatLoggerFactory`` that feeds this object."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        metrics = self

        class _TritonStatLogger(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                self.engine_index = engine_index

            def record(self, scheduler_stats, iteration_stats, *args, **kwargs):
                try:
                    metrics.record(scheduler_stats, iteration_stats)
                except Exception as exc:  # noqa: BLE001 - metrics must never stop the engine
                    pb_utils.Logger.log_warn(f"engine metrics not recorded: {exc}")

            def log_engine_initialized(self):
                pass

        return _TritonStatLogger
