"""Chaos soak of a supervised server on the CPU default (tiny model): mixed traffic and one killed stub.

    python benchmarks/chaos_soak.py --minutes 20            # what KIT_SOAK=1 runs
    python benchmarks/chaos_soak.py --minutes 5 --kill-at 60

Starts its own server (two pipeline instances) under :class:`kit.supervisor.Supervisor`,
runs :func:`kit.perf.chaos.soak` and prints its figures: requests, failures besides those in
flight on the killed stub, hung requests, the recovery time and resident memory growth after
warm-up. Exits 1 when a request failed or hung, or memory grew by 5 % or more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit import repository
from kit import server as srv
from kit.config import DeploymentConfig
from kit.perf.chaos import soak
from kit.supervisor import Supervisor
from kit.weights import build_tiny_model

MAX_RSS_GROWTH = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--kill-at", type=float, default=60, help="seconds into the soak to kill a pipeline stub")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=60, help="seconds of traffic before memory is first read")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kit-soak-") as tmp:
        config = DeploymentConfig.cpu_default(build_tiny_model(), blocking_variant=False, pipeline_instances=2)
        server = srv.Server(repository.build(config, Path(tmp) / "model_repository"))
        server.start()
        try:
            with Supervisor(server, interval_s=0.5) as supervisor:
                report = soak(server, supervisor, duration_s=args.minutes * 60, kill_at_s=args.kill_at,
                              concurrency=args.concurrency, warmup_s=args.warmup)
        finally:
            server.stop(drain=False)
    print(report.summary())
    for failure in report.failures[:20]:
        print("  failure:", failure)
    growth = report.rss_growth
    bad = report.failures or report.hung or growth is None or growth >= MAX_RSS_GROWTH
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
