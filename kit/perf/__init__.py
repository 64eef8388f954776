"""Performance measurement: Triton's ``perf_analyzer``, a token-level load generator, the bench.

* :mod:`kit.perf.perf_analyzer` runs NVIDIA's ``perf_analyzer`` binary (request-level view:
  infer/s and latency percentiles, as the original showcase reported them);
* :mod:`kit.perf.load` is an asyncio gRPC streaming load generator for what a chat user
  feels: time to first token, inter-token latency, output tokens per second;
* :mod:`kit.perf.bench` is ``python -m kit bench``: the same requests sent directly to the
  LLM, through the guarded pipeline and through the blocking pipeline, with headline ratios.

Figures for all of them are in :mod:`kit.plots`.
"""

__all__ = ["bench", "load", "perf_analyzer"]
