"""``python -m kit <command>``: the kit from a terminal.

Commands: ``build``, ``serve [--detach]``, ``status``, ``stop``, ``download``,
``generate``, ``demo``, ``run``, ``bench``, ``bundle``. Each one's ``--help``
says more. Errors of the kit print one line (what to do) and exit with
:data:`kit.exceptions.EXIT_CODE`.

The CLI sits on top: it parses arguments and forwards them to the library
(:mod:`kit.deployment`, :mod:`kit.server`, :mod:`kit.notebooks`,
:mod:`kit.perf.bench`, ...); nothing in the kit imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from kit import params as kit_params
from kit.exceptions import KitError, exit_with


def _serve(args) -> int:
    from kit import detached
    from kit import server as srv
    from kit.paths import state_path

    state = detached.read_state()
    if args.detach and state and detached.status(state).ready:
        print(f"a server is already running (pid {state.pid}):")
        _print_addresses(state)
        return 0
    from kit.deployment import ensure_repository

    params = kit_params.load(args.params)
    repo = Path(args.repository) if args.repository else ensure_repository(params)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: binding to {args.host} exposes the server (and its metrics) to the network; "
              "put it behind a firewall or an authenticating proxy", file=sys.stderr)
    if args.detach and not args.no_supervise:
        return _serve_detached_supervised(args, repo)
    server = srv.Server(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port)
    server.start(timeout=args.timeout)
    api = None
    if args.openai:
        from kit.openai.service import OpenAIService

        try:
            api = OpenAIService(server.endpoints.grpc_address, host=args.host, port=args.openai_port,
                                workers=args.openai_workers).start()
        except BaseException:
            server.stop()
            raise
    record = detached.ServerState.of(server, api)
    if args.detach:
        path = detached.write_state(record)
        server.process = None  # leave it running: `python -m kit stop` ends it
        if api:
            api.process = None
        _print_addresses(record)
        print(f"detached; state in {path}; stop with `python -m kit stop`")
        return 0
    _print_addresses(record)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    supervisor = None

    def recorded() -> bool:
        state = detached.read_state()
        return state is not None and state.supervisor_pid == os.getpid()

    if not args.no_supervise:
        from kit.supervisor import Supervisor

        def record_state(server) -> None:
            if args.write_state:
                detached.write_state(detached.ServerState.of(server, api, supervisor_pid=os.getpid(),
                                                             health_port=supervisor.port))

        supervisor = Supervisor(server, host=args.host, port=args.health_port or 0,
                                on_state_change=record_state).start()
        record_state(server)
        print(f"  {'health':12} {supervisor.health_url} (and /metrics: kit_model_recoveries_total)")
    print(f"serving; Ctrl-C or SIGTERM drains requests in flight (up to {server.drain_s}s) and stops the server",
          flush=True)
    try:
        while not stop["now"] and (supervisor or server.process.poll() is None) and \
                (api is None or api.process.poll() is None):
            if args.write_state and not recorded():
                print("the state file no longer names this supervisor: stopping", flush=True)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if api:
            api.stop()  # first: it talks to the server
        if supervisor is not None:
            supervisor.stop()
        server.stop(drain=True)
        if args.write_state and recorded():
            state_path().unlink(missing_ok=True)
    return 0


def _serve_detached_supervised(args, repo: Path) -> int:
    """Run ``kit serve`` (supervised) in a session of its own; return once it recorded a ready server."""
    import subprocess

    from kit import detached
    from kit.paths import new_log

    command = [sys.executable, "-m", "kit", "serve", "--repository", str(repo), "--write-state",
               "--host", args.host, "--timeout", str(args.timeout)]
    for flag, value in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                        ("--metrics-port", args.metrics_port), ("--health-port", args.health_port)):
        if value:
            command += [flag, str(value)]
    if args.openai:
        command += ["--openai", "--openai-port", str(args.openai_port), "--openai-workers", str(args.openai_workers)]
    log = new_log("supervisor")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    with open(log, "ab") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
    deadline = time.monotonic() + args.timeout + 60
    while time.monotonic() < deadline:
        state = detached.read_state()
        if state and state.supervisor_pid == child.pid:
            _print_addresses(state)
            print(f"detached, supervised (pid {child.pid}, log {log}); stop with `python -m kit stop`")
            return 0
        if child.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise KitError(f"the server did not start (exit code {child.returncode}):\n{tail}\nfull log: {log}")
        time.sleep(0.5)
    child.terminate()
    raise KitError(f"the server was not ready after {args.timeout:.0f}s; see {log}")


def _print_addresses(state) -> None:
    """A :class:`kit.detached.ServerState`'s addresses, one per line."""
    for name, value in state.addresses().items():
        print(f"  {name:12} {value}")


def _status(args) -> int:
    from kit import detached

    report = detached.status()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.message)
        for model in report.models:
            print(f"  {model['name']:24} {model.get('state', '?'):12} {model.get('reason', '')}")
        for line in report.errors:
            print(f"  log: {line}")
    return 0 if report.ready else 1


def _stop(args) -> int:
    from kit import detached

    print("stopped" if detached.stop_detached(drain=True) else "no detached server was running")
    return 0


def _restart(args) -> int:
    from kit import detached

    detached.restart_detached(timeout=args.timeout)
    print("restarted:")
    _print_addresses(detached.read_state())
    return 0


def _build(args) -> int:
    from kit import repository, weights
    from kit.deployment import ensure_repository

    if args.committed:
        print(repository.build_committed())
        return 0
    if args.dummy_llama3:
        print(weights.build_dummy_llama3(Path(args.dummy_llama3)))
        return 0
    print(ensure_repository(kit_params.load(args.params), Path(args.out) if args.out else None))
    return 0


def _download(args) -> int:
    from kit import weights

    weights.download_model(args.repo_id, Path(args.models_dir) if args.models_dir else None)
    return 0


def _generate(args) -> int:
    from kit.client import Client

    client = Client.from_state(model=args.model)
    if args.stream:
        for delta in client.stream(args.prompt, max_tokens=args.max_tokens):
            print(delta.text, end="", flush=True)
        print()
        return 0
    result = client.generate(args.prompt, max_tokens=args.max_tokens)
    print(result.text)
    print(f"[blocked={result.blocked} censored={result.censored} latency={result.latency_s:.2f}s]", file=sys.stderr)
    return 0


def _demo(args) -> int:
    from kit import notebooks

    notebooks.demo(params_file=args.params, out_dir=Path(args.reports) if args.reports else None)
    return 0


def _run(args) -> int:
    from kit import notebooks

    overrides = notebooks.parse_overrides(args.notebook, args.parameter)
    notebooks.run_one(args.notebook, params_file=args.params, overrides=overrides)
    return 0


def _bench(args) -> int:
    if args.vs_vllm_serve:
        from kit.perf import head_to_head

        return head_to_head.main(args)
    from kit.perf import bench

    settings = bench.BenchSettings(
        concurrency=tuple(args.concurrency or ()), max_tokens=args.max_tokens, requests=args.requests,
        quick=args.quick, streams_per_process=args.streams_per_process,
        out=Path(args.out) if args.out else None, params=args.params, grpc_url=args.grpc_url,
        guard_bench=not args.no_guard_bench, perf_analyzer=args.perf_analyzer, progress=not args.no_progress,
        repeats=args.repeats,
    )
    return bench.main(settings)


def _bundle(args) -> int:
    from kit import bundle

    bundle.main(args)
    return 0


def parser() -> argparse.ArgumentParser:
    """The ``python -m kit`` argument parser, one subcommand per command."""
    p = argparse.ArgumentParser(prog="python -m kit", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the server (the embedded CPU default unless told otherwise)")
    s.add_argument("--repository", help="serve this model repository as it is")
    s.add_argument("--params", help="YAML parameters (e.g. params/gpu.yaml) describing the deployment")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--http-port", type=int)
    s.add_argument("--grpc-port", type=int)
    s.add_argument("--metrics-port", type=int)
    s.add_argument("--timeout", type=float, default=900, help="seconds to wait for every model to be ready")
    s.add_argument("--detach", action="store_true", help="keep running in the background; see `kit status`/`kit stop`")
    s.add_argument("--no-supervise", action="store_true",
                   help="do not restart the server when it or a model's stub dies")
    s.add_argument("--health-port", type=int, help="port of the supervisor's /health and /metrics (default: free)")
    s.add_argument("--write-state", action="store_true", help=argparse.SUPPRESS)  # the detached supervisor
    s.add_argument("--openai", action="store_true",
                   help="also serve the OpenAI-compatible API (/v1/chat/completions, ...) beside Triton")
    s.add_argument("--openai-port", type=int, default=9000, help="port of the OpenAI API (default 9000)")
    s.add_argument("--openai-workers", type=int, default=1, help="processes of the OpenAI API (default 1)")
    s.set_defaults(func=_serve)

    s = sub.add_parser("status", help="is the detached server ready? which model is not, and why")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)

    s = sub.add_parser("stop", help="stop the detached server and every process it started")
    s.set_defaults(func=_stop)

    s = sub.add_parser("restart", help="stop the detached server and start it again (same repository and ports)")
    s.add_argument("--timeout", type=float, default=900)
    s.set_defaults(func=_restart)

    s = sub.add_parser("build", help="build a model repository (default: the CPU one under build/)")
    s.add_argument("--params", help="YAML parameters describing the deployment")
    s.add_argument("--out", help="output folder")
    s.add_argument("--committed", action="store_true", help="regenerate the committed model_repository/")
    s.add_argument("--dummy-llama3", metavar="DIR",
                   help="write a Llama-3-8B-shaped model folder (config + tokenizer) for load_format=dummy")
    s.set_defaults(func=_build)

    s = sub.add_parser("download", help="download a model from the Hugging Face hub (token from .env)")
    s.add_argument("--repo-id", default="meta-llama/Meta-Llama-3-8B-Instruct")
    s.add_argument("--models-dir")
    s.set_defaults(func=_download)

    s = sub.add_parser("generate", help="send one prompt to the detached server")
    s.add_argument("prompt")
    s.add_argument("--model", default="llama_bls_ensemble")
    s.add_argument("--max-tokens", type=int, default=64)
    s.add_argument("--stream", action="store_true")
    s.set_defaults(func=_generate)

    s = sub.add_parser("demo", help="run every notebook (build, serve, guardrails, performance) into reports/")
    s.add_argument("--params", help="YAML parameters for every notebook (e.g. params/gpu.yaml)")
    s.add_argument("--reports", help="reports folder (default reports/)")
    s.set_defaults(func=_demo)

    s = sub.add_parser("run", help="run one notebook with papermill")
    s.add_argument("notebook")
    s.add_argument("--params", help="YAML parameters file")
    s.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    s.set_defaults(func=_run)

    s = sub.add_parser("bench", help="direct vs pipeline vs blocking, same requests, same run; prints ratios")
    _add_bench_arguments(s)
    s.set_defaults(func=_bench)

    s = sub.add_parser("bundle", help="gather every wheel an air-gapped host needs")
    _add_bundle_arguments(s)
    s.set_defaults(func=_bundle)
    return p


def int_list(text: str) -> list[int]:
    """``1,8,48`` → [1, 8, 48] (sorted, unique, positive); argparse's error otherwise."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,48, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sorted(set(values))


def positive_int(text: str) -> int:
    """A positive integer; argparse's error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from kit.perf.bench import DEFAULT_CONCURRENCY, DEFAULT_MAX_TOKENS, QUICK_MAX_TOKENS

    levels = ",".join(map(str, DEFAULT_CONCURRENCY))
    parser.add_argument("--quick", action="store_true",
                        help=f"short run: max_tokens {QUICK_MAX_TOKENS}, fewer requests, smaller guard benchmark")
    parser.add_argument("--concurrency", type=int_list, default=None,
                        help=f"concurrency levels, comma-separated (default {levels})")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help=f"tokens per request, fixed with ignore_eos (default {DEFAULT_MAX_TOKENS}, "
                             f"--quick {QUICK_MAX_TOKENS})")
    parser.add_argument("--requests", type=positive_int, default=None,
                        help="requests per endpoint and level (default: max(32, 4 × concurrency), "
                             "--quick max(16, 3 × concurrency); the blocking pipeline gets as many as "
                             "the concurrency)")
    parser.add_argument("--out", default=None, help="results folder (default reports/bench/<timestamp>)")
    parser.add_argument("--params", default=None,
                        help="YAML parameters of the deployment to start when no server is running")
    parser.add_argument("--grpc-url", default=None, help="measure this running server (host:port of its gRPC endpoint)")
    parser.add_argument("--no-guard-bench", action="store_true", help="skip the guard vs better_profanity benchmark")
    parser.add_argument("--perf-analyzer", action="store_true",
                        help="also run one perf_analyzer concurrency sweep through the pipeline")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--vs-vllm-serve", action="store_true",
                        help="instead: `vllm serve` vs the kit's OpenAI service (bare LLM, guarded pipeline) on the "
                             "same model and engine arguments, measured by `vllm bench serve` (see "
                             "kit/perf/head_to_head.py); uses --params, --concurrency (default 1,4,16), "
                             "--max-tokens (default 32), --requests, --out")
    parser.add_argument("--openai-workers", type=positive_int, default=1,
                        help="processes of the kit's OpenAI API with --vs-vllm-serve (default 1; e.g. 4 on a GPU "
                             "serving hundreds of streams)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="whole comparisons back to back; ratios are their medians with the spread (default 3)")
    parser.add_argument("--streams-per-process", type=int, default=0,
                        help="one client process per this many streams (default 0: one process; a GPU serving "
                             "hundreds of streams outruns one Python client, use e.g. 32)")


def _add_bundle_arguments(s) -> None:
    try:
        from kit.bundle import add_arguments
    except ImportError:
        return
    add_arguments(s)


def tolerant_stdio(*streams) -> None:
    """Never fail on a character the terminal cannot show (an engine log line's em dash under an ASCII
    locale raised UnicodeEncodeError in ``kit status``): write it as an escape instead."""
    for stream in streams or (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run one command; a :class:`KitError` prints ``error: …`` and returns :data:`~kit.exceptions.EXIT_CODE`."""
    tolerant_stdio()
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KitError as exc:
        return exit_with(exc)


if __name__ == "__main__":
    sys.exit(main())
