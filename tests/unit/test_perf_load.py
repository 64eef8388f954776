"""kit.perf.load: the load generator's arithmetic, shares, sweeps and rounds (no server)."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from perfdata import requests_frame

from kit.config import BLOCKING_MODEL, LLM_MODEL, PIPELINE_MODEL
from kit.exceptions import SetupError
from kit.perf import load


def test_summarize_reads_back_saved_requests(tmp_path):
    """Errors read back from CSV (empty → NaN) still count as successes; the figures survive a round trip."""
    frame = requests_frame("direct", 2, [(0.0, 0.01, 0.1, ""), (0.05, 0.02, 0.2, ""), (0.1, 0.0, 0.01, "bad")])
    load.save(frame, load.summarize(frame), tmp_path)
    reread = pd.read_csv(tmp_path / "requests.csv")
    assert reread["error"].isna().sum() == 2
    pd.testing.assert_frame_equal(load.summarize(reread), pd.read_csv(tmp_path / "sweep.csv"), check_dtype=False)
    assert json.loads((tmp_path / "sweep.json").read_text())[0]["errors"] == 1


def test_run_level_rejects_bad_arguments():
    """Zero concurrency, requests or tokens, or no prompts, are refused before connecting."""
    for kwargs in ({"concurrency": 0}, {"requests": 0}, {"max_tokens": 0}, {"prompts": []}):
        args = {"concurrency": 1, "requests": 1, "max_tokens": 1, "prompts": ["p"], **kwargs}
        with pytest.raises(ValueError):
            load.run_level("grpc://127.0.0.1:1", LLM_MODEL, **args)


@pytest.mark.parametrize("concurrency,requests,processes,expected", [
    (8, 16, 1, [(8, list(range(16)))]),
    (5, 10, 2, [(3, [0, 1, 2, 3, 4, 5]), (2, [6, 7, 8, 9])]),
    (256, 512, 8, [(32, list(range(64 * k, 64 * (k + 1)))) for k in range(8)]),
    (2, 4, 8, [(1, [0, 1]), (1, [2, 3])]),      # never more processes than streams
    (4, 2, 4, [(2, [0]), (2, [1])]),             # ... or than requests
])
def test_shares_split_streams_and_requests_evenly(concurrency, requests, processes, expected):
    parts = load.shares(concurrency, requests, processes)
    assert parts == expected
    assert sum(c for c, _ in parts) == concurrency
    assert sorted(i for _, indices in parts for i in indices) == list(range(requests))


def test_process_count():
    assert load.process_count(256, None) == 1
    assert load.process_count(256, 32, 16) == 8
    assert load.process_count(33, 32, 16) == 2
    assert load.process_count(1024, 32, 4) == 4
    assert load.process_count(1, 32, 4) == 1


def test_run_level_joins_process_shares_on_one_clock(monkeypatch):
    """Each share runs with its own concurrency and indices; rows meet on the shared monotonic clock."""
    from concurrent.futures import ThreadPoolExecutor

    seen = []

    async def fake_level(*, concurrency, indices, model, **kwargs):
        seen.append((concurrency, list(indices), kwargs["progress"]))
        base = 100.0 + indices[0]  # shares start at different absolute times
        return [{"request": i, "start": base + 0.5 * n, "ttft_s": 0.1, "latency_s": 1.0, "chunks": 3,
                 "responses": 4, "output_chars": 9, "blocked": False, "error": ""} for n, i in enumerate(indices)]

    monkeypatch.setattr(load, "_run_level_async", fake_level)
    with ThreadPoolExecutor(2) as pool:
        frame = load.run_level("grpc://x:1", LLM_MODEL, concurrency=4, requests=6, max_tokens=5, prompts=["p"],
                               processes=2, pool=pool, endpoint="direct")
    assert sorted(seen) == [(2, [0, 1, 2], False), (2, [3, 4, 5], False)]
    assert frame["request"].tolist() == list(range(6))
    assert frame["start_s"].tolist() == [0.0, 0.5, 1.0, 3.0, 3.5, 4.0]
    assert frame["output_tokens"].tolist() == [5] * 6


def test_process_shares_start_sending_together(monkeypatch):
    """A share that is ready late holds the others back: every share is ready before any sends."""
    from concurrent.futures import ThreadPoolExecutor

    events = []

    async def fake_level(*, concurrency, indices, model, start_together, **kwargs):
        if indices[0]:
            await asyncio.sleep(0.3)  # a worker process that took longer to start
        events.append(("ready", indices[0]))
        await load._wait_for_the_other_shares(start_together)
        events.append(("send", indices[0]))
        return [{"request": i, "start": 1.0, "ttft_s": 0.1, "latency_s": 1.0, "chunks": 1, "responses": 1,
                 "output_chars": 1, "blocked": False, "error": ""} for i in indices]

    monkeypatch.setattr(load, "_run_level_async", fake_level)
    with ThreadPoolExecutor(2) as pool:
        load.run_level("grpc://x:1", LLM_MODEL, concurrency=2, requests=4, max_tokens=5, prompts=["p"],
                       processes=2, pool=pool)
    assert {kind for kind, _ in events[:2]} == {"ready"} and {kind for kind, _ in events[2:]} == {"send"}


def test_a_share_that_fails_before_sending_releases_the_others(monkeypatch):
    """The failing share's error reaches the caller; the share waiting for it gives up with a SetupError."""
    from concurrent.futures import ThreadPoolExecutor

    waited = []

    async def fake_level(*, indices, start_together, **kwargs):
        if indices[0] == 0:
            await asyncio.sleep(0.2)  # the other share is waiting by now
            raise RuntimeError("worker could not connect")
        try:
            await load._wait_for_the_other_shares(start_together)
        except SetupError as exc:
            waited.append(str(exc))
        return []

    monkeypatch.setattr(load, "_run_level_async", fake_level)
    with ThreadPoolExecutor(2) as pool:
        with pytest.raises(RuntimeError, match="worker could not connect"):
            load.run_level("grpc://x:1", LLM_MODEL, concurrency=2, requests=4, max_tokens=5, prompts=["p"],
                           processes=2, pool=pool)
    assert len(waited) == 1 and "streams_per_process=0" in waited[0]


def test_sweep_orders_levels_and_counts_requests(monkeypatch, tmp_path):
    """Endpoints run back to back per level, with per-endpoint request counts, and results are saved."""
    calls = []

    def fake_run_level(grpc_url, model, *, concurrency, requests, max_tokens, prompts, endpoint=None, **kwargs):
        calls.append((endpoint, model, concurrency, requests, max_tokens, kwargs.get("progress")))
        return requests_frame(endpoint, concurrency, [(0.0, 0.01, 0.1, "")] * requests, max_tokens, model)

    monkeypatch.setattr(load, "run_level", fake_run_level)
    per_request, summary = load.sweep(
        "grpc://x:1", {"direct": LLM_MODEL, "blocking": BLOCKING_MODEL}, concurrencies=[1, 4], max_tokens_list=[8],
        requests_per_level=lambda label, c: c if label == "blocking" else 10, prompts=["p"], out_dir=tmp_path,
        warmup=1)
    measured = [c for c in calls if c[5] is not False]  # warm-up calls run without progress bars
    assert [c[:4] for c in measured] == [("direct", LLM_MODEL, 1, 10), ("blocking", BLOCKING_MODEL, 1, 1),
                                         ("direct", LLM_MODEL, 4, 10), ("blocking", BLOCKING_MODEL, 4, 4)]
    assert len(calls) == 6
    assert summary["requests"].tolist() == [10, 1, 10, 4]
    assert len(per_request) == 25
    assert {"sweep.csv", "requests.csv", "sweep.json"} <= {p.name for p in tmp_path.iterdir()}


def test_sweep_stops_when_before_level_says_so(monkeypatch):
    """A failed check before a level ends the sweep there; the levels measured so far are kept."""
    monkeypatch.setattr(load, "run_level", lambda grpc_url, model, *, concurrency, requests, max_tokens, prompts,
                        endpoint=None, **kw: requests_frame(endpoint, concurrency, [(0.0, 0.01, 0.1, "")] * requests,
                                                       max_tokens, model))
    asked = []

    def before(max_tokens, concurrency):
        asked.append((max_tokens, concurrency))
        return concurrency < 4

    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[1, 2, 4, 8],
                                      max_tokens_list=[8], requests_per_level=4, prompts=["p"], warmup=0,
                                      before_level=before)
    assert asked == [(8, 1), (8, 2), (8, 4)]
    assert summary["concurrency"].tolist() == [1, 2]
    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[1], max_tokens_list=[8],
                                      requests_per_level=4, prompts=["p"], warmup=0, before_level=lambda m, c: False)
    assert per_request.empty and summary.empty
    assert list(summary.columns[: len(load.SWEEP_COLUMNS)]) == load.SWEEP_COLUMNS


def test_sweep_rounds_take_turns_and_join_slices(monkeypatch):
    """With rounds, endpoints alternate slice by slice; each request keeps its prompt; slices join end to end."""
    calls = []

    def fake_run_level(grpc_url, model, *, concurrency, requests, max_tokens, prompts, endpoint=None, **kwargs):
        calls.append((endpoint, requests, prompts[0]))
        return requests_frame(endpoint, concurrency, [(0.5 * i, 0.1, 0.5, "") for i in range(requests)], max_tokens)

    monkeypatch.setattr(load, "run_level", fake_run_level)
    prompts = ["p0", "p1", "p2", "p3"]
    per_request, summary = load.sweep("grpc://x:1", {"direct": LLM_MODEL, "pipeline": PIPELINE_MODEL},
                                      concurrencies=[1], max_tokens_list=[8], requests_per_level=4, prompts=prompts,
                                      warmup=0, rounds=2)
    assert calls == [("direct", 2, "p0"), ("pipeline", 2, "p0"), ("direct", 2, "p2"), ("pipeline", 2, "p2")]
    direct = per_request[per_request["endpoint"] == "direct"]
    assert direct["request"].tolist() == [0, 1, 2, 3]
    assert direct["start_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert summary["wall_s"].tolist() == [2.0, 2.0]
    assert summary["output_tokens_per_s"].tolist() == [16.0, 16.0]
    calls.clear()
    load.sweep("grpc://x:1", {"direct": LLM_MODEL}, concurrencies=[4], max_tokens_list=[8], requests_per_level=9,
               prompts=prompts, warmup=0, rounds=4)
    assert [c[1] for c in calls] == [4, 5]  # two slices: a third would hold fewer requests than the concurrency


def test_slice_bounds_never_cut_a_slice_below_the_concurrency():
    """Rounds slices of whole request ranges, end to end; fewer when a slice would hold fewer requests than the streams."""
    assert load.slice_bounds(8, 4, 2) == [(0, 4), (4, 8)]
    assert load.slice_bounds(9, 2, 3) == [(0, 3), (3, 6), (6, 9)]
    assert load.slice_bounds(4, 4, 2) == [(0, 4)]
    assert load.slice_bounds(2, 4, 2) == [(0, 2)]
