"""How far apart a level's client processes start sending, with and without the start barrier.

``kit.perf.load`` shares a level's streams out over worker processes. On an H200 at 256 streams
(8 processes, after a 64-stream level that used 2) the six processes the pool spawned for the
level sent their first request 0.45-0.77 s after the two it kept, while vLLM's in-process
``AsyncLLM``, the baseline, starts all its streams at once: 3-10 % of the level's output tok/s.
Since then the processes wait for each other (``run_level``'s barrier). This benchmark shows the
client side alone, without a server: requests to a closed port fail at once, but each still
records when it was sent. Per round: a fresh pool, a 2-process level to warm two workers, then an
8-process level, once without the barrier (the old path) and once through ``run_level``; the
spread is the last process's first send minus the first one's::

    python benchmarks/client_start.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.config import LLM_MODEL
from kit.endpoints import free_port
from kit.perf import load


def spread_s(first_sends: list[float]) -> float:
    return max(first_sends) - min(first_sends)


def one_round(url: str, processes: int, barrier: bool) -> float:
    """Seconds between the first and the last process's first request in a level after a warm-up level."""
    common = dict(grpc_url=url, model=LLM_MODEL, max_tokens=8, prompts=["hello"], prompt_is_formatted=True,
                  sampling={}, endpoint="direct", timeout_s=5.0, stream=True)
    with load.client_pool(processes) as pool:
        load.run_level(url, LLM_MODEL, concurrency=2, requests=2, max_tokens=8, prompts=["hello"],
                       processes=2, pool=pool, progress=False)  # two workers warm, as after a smaller level
        if barrier:
            frame = load.run_level(url, LLM_MODEL, concurrency=processes, requests=processes, max_tokens=8,
                                   prompts=["hello"], processes=processes, pool=pool, progress=False)
            return spread_s(frame["start_s"].tolist())
        jobs = [dict(common, concurrency=c, indices=indices, progress=False)
                for c, indices in load.shares(processes, processes, processes)]
        rows = [row for part in pool.map(load._run_share, jobs) for row in part]
        return spread_s([row["start"] for row in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--processes", type=int, default=8)
    args = p.parse_args()
    url = f"grpc://127.0.0.1:{free_port()}"  # nothing listens there
    results: dict[str, list[float]] = {"without barrier": [], "with barrier": []}
    for _ in range(args.rounds):
        results["without barrier"].append(one_round(url, args.processes, barrier=False))
        results["with barrier"].append(one_round(url, args.processes, barrier=True))
    for label, values in results.items():
        print(f"{label:16s} first-send spread over {args.processes} processes: median "
              f"{statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}), "
              f"{len(values)} rounds")


if __name__ == "__main__":
    main()
