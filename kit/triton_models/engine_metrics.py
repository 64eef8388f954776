"""vLLM engine statistics exported on Triton's metrics port.

vLLM calls a stat logger once per engine step with scheduler and iteration
statistics; :class:`EngineMetrics` turns them into Triton custom metrics
(``pb_utils.MetricFamily``) with the names NVIDIA's vLLM backend uses, so
dashboards work unchanged. Time to first token is exported as ``_sum`` and
``_count`` counters (a mean that Prometheus can rate), which every Triton
release supports.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils


def close_metrics(holder) -> None:
    """Delete every ``Metric`` attribute of ``holder``, then its ``families``."""
    for name in [n for n in vars(holder) if n != "families"]:
        delattr(holder, name)
    holder.families.clear()


class EngineMetrics:
    def __init__(self, labels: dict[str, str]):
        # Triton needs each MetricFamily to outlive its Metric objects: keep both.
        self.families = []

        def family(name, description, kind):
            self.families.append(pb_utils.MetricFamily(name=name, description=description, kind=kind))
            return self.families[-1].Metric(labels=labels)

        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        self.running = family("vllm:num_requests_running", "Requests in the engine's running batch", gauge)
        self.waiting = family("vllm:num_requests_waiting", "Requests waiting to be scheduled", gauge)
        self.prompt_tokens = family("vllm:prompt_tokens_total", "Prompt tokens processed", counter)
        self.generation_tokens = family("vllm:generation_tokens_total", "Tokens generated", counter)
        self.preemptions = family("vllm:num_preemptions_total", "Requests preempted", counter)
        self.ttft_sum = family("vllm:time_to_first_token_seconds_sum", "Sum of times to first token", counter)
        self.ttft_count = family("vllm:time_to_first_token_seconds_count", "Requests with a first token", counter)
        self.finished = family("vllm:request_success_total", "Requests finished", counter)

    def close(self) -> None:
        """Drop the metrics before their families (the other order crashes the stub at exit)."""
        close_metrics(self)

    def record(self, scheduler_stats, iteration_stats) -> None:
        if scheduler_stats is not None:
            self.running.set(getattr(scheduler_stats, "num_running_reqs", 0))
            self.waiting.set(getattr(scheduler_stats, "num_waiting_reqs", 0))
        if iteration_stats is not None:
            prompt = getattr(iteration_stats, "num_prompt_tokens", 0)
            self.prompt_tokens.increment(prompt if isinstance(prompt, int) else 0)
            self.generation_tokens.increment(getattr(iteration_stats, "num_generation_tokens", 0))
            self.preemptions.increment(getattr(iteration_stats, "num_preempted_reqs", 0))
            ttfts = getattr(iteration_stats, "time_to_first_tokens_iter", [])
            if ttfts:
                self.ttft_sum.increment(float(sum(ttfts)))
                self.ttft_count.increment(len(ttfts))
            self.finished.increment(len(getattr(iteration_stats, "finished_requests", [])))

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
