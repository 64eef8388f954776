"""Recorded perf_analyzer output and small frames shaped like the load generator's, shared by the perf tests."""

from __future__ import annotations

import pandas as pd

# Recorded from perf_analyzer 2.51 against llama_bls_ensemble (tiny model, CPU), gRPC streaming.
RECORDED_CSV = """\
Concurrency,Inferences/Second,Response Throughput,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,\
p95 latency,p99 latency
1,20.8752,249.952,0,47034,79,40,340,14,0,44721,64450,67319,72452
2,29.4019,358.044,0,66152,77,38,363,17,0,60025,91427,106110,223133
"""
# The same with --verbose-csv (adds "Avg latency", "request/response", "response wait").
RECORDED_VERBOSE_CSV = """\
Concurrency,Inferences/Second,Response Throughput,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,\
p95 latency,p99 latency,Avg latency,request/response,response wait
2,29.9878,479.805,0,46470,147,31,450,4,0,41998,63360,75826,84606,47104,0,0
"""


def requests_frame(endpoint, concurrency, rows, max_tokens=10, model=None):
    """Per-request rows as :func:`kit.perf.load.run_level` returns them, from (start_s, ttft_s, latency_s, error)."""
    return pd.DataFrame([{
        "endpoint": endpoint, "model": model or endpoint, "concurrency": concurrency, "max_tokens": max_tokens,
        "request": i, "start_s": s, "ttft_s": t, "latency_s": lat, "chunks": max_tokens, "responses": max_tokens,
        "output_tokens": 0 if err else max_tokens, "output_chars": 3 * max_tokens, "blocked": False, "error": err,
    } for i, (s, t, lat, err) in enumerate(rows)])


def summary_frame(rows):
    """A summary from (endpoint, concurrency, tokens/s, ttft ms) tuples."""
    return pd.DataFrame([{"endpoint": e, "concurrency": c, "max_tokens": 64, "requests": 8, "output_tokens_per_s": t,
                          "ttft_p50_ms": f, "itl_mean_ms": 1.0, "latency_p50_s": 0.1, "errors": 0,
                          "requests_per_s": t / 64, "latency_p99_s": 0.2}
                         for e, c, t, f in rows])


SUMMARY = summary_frame([
    ("direct", 8, 1000.0, 20.0), ("pipeline", 8, 950.0, 21.2), ("blocking", 8, 130.0, 40.0),
    ("direct", 48, 4000.0, 50.0), ("pipeline", 48, 3800.0, 58.0), ("blocking", 48, 100.0, 900.0),
])
