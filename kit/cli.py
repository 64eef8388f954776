"""``python -m kit <command>``: the kit from a terminal.

Commands: ``build``, ``serve [--detach]``, ``status``, ``stop``, ``download``,
``generate``, ``demo``, ``run``, ``bench``, ``bundle``. Each one's ``--help``
says more. Errors of the kit print one line (what to do) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from kit import params as kit_params
from kit.exceptions import KitError


def ensure_repository(params: dict, out: Path | None = None) -> Path:
    """Build the repository the parameters describe (the tiny model first when it is needed)."""
    from kit import models, repository

    config = kit_params.deployment(params)
    if params.get("profile", "cpu") == "cpu" and Path(config.model) == models.tiny_model_dir().resolve():
        models.build_tiny_model()
    elif not config.model_is_local:
        if config.engine_args.get("load_format") == "dummy":
            raise KitError("load_format 'dummy' needs a local model folder (config + tokenizer); "
                           "build one with `python -m kit build --dummy-llama3`")
        local = models.download_model(config.model)
        config = kit_params.deployment({**params, "model": str(local)})
    out = Path(out or params.get("repository") or repository.default_cpu_repository())
    return repository.build(config, out)


def _serve(args) -> int:
    from kit import server as srv

    state = srv.read_state()
    if args.detach and state and srv.status(state).get("ready"):
        print(f"a server is already running (pid {state['pid']}):")
        _print_urls(state)
        return 0
    params = kit_params.load(args.params)
    repo = Path(args.repository) if args.repository else ensure_repository(params)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: binding to {args.host} exposes the server (and its metrics) to the network; "
              "put it behind a firewall or an authenticating proxy", file=sys.stderr)
    server = srv.Server(repo, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                        metrics_port=args.metrics_port)
    server.start(timeout=args.timeout)
    api = None
    if args.openai:
        from kit.openai.service import OpenAIService

        try:
            api = OpenAIService(server.endpoints.grpc_url, host=args.host, port=args.openai_port,
                                workers=args.openai_workers).start()
        except BaseException:
            server.stop()
            raise
    extra = api.record() if api else {}
    record = {**server.record(), **extra}
    if args.detach:
        path = srv.write_state(server, extra=extra)
        server.process = None  # leave it running: `python -m kit stop` ends it
        if api:
            api.process = None
        _print_urls(record)
        print(f"detached; state in {path}; stop with `python -m kit stop`")
        return 0
    _print_urls(record)
    print("serving; Ctrl-C stops the server")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"] and server.process.poll() is None and (api is None or api.process.poll() is None):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if api:
            api.stop()
        server.stop()
    return 0


def _print_urls(record: dict) -> None:
    for key in ("http_url", "grpc_url", "metrics_url", "openai_url", "repository", "log"):
        if key in record:
            print(f"  {key:12} {record[key]}")


def _status(args) -> int:
    from kit import server as srv

    report = srv.status()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["message"])
        for model in report.get("models", []):
            print(f"  {model['name']:24} {model.get('state', '?'):12} {model.get('reason', '')}")
        for line in report.get("errors", []):
            print(f"  log: {line}")
    return 0 if report.get("ready") else 1


def _stop(args) -> int:
    from kit import server as srv

    print("stopped" if srv.stop_detached() else "no detached server was running")
    return 0


def _restart(args) -> int:
    from kit import server as srv

    server = srv.restart_detached(timeout=args.timeout)
    print("restarted:")
    _print_urls(server.record())
    return 0


def _build(args) -> int:
    from kit import models, repository

    if args.committed:
        print(repository.build_committed())
        return 0
    if args.dummy_llama3:
        print(models.build_dummy_llama3(Path(args.dummy_llama3)))
        return 0
    print(ensure_repository(kit_params.load(args.params), Path(args.out) if args.out else None))
    return 0


def _download(args) -> int:
    from kit import models

    models.download_model(args.repo_id, Path(args.models_dir) if args.models_dir else None)
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

    overrides = {k: notebooks.parse_value(v) for k, v in args.parameter}
    notebooks.run_one(args.notebook, params_file=args.params, overrides=overrides)
    return 0


def _bench(args) -> int:
    from kit.perf import bench

    return bench.main(args)


def _bundle(args) -> int:
    from kit import bundle

    bundle.main(args)
    return 0


def parser() -> argparse.ArgumentParser:
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


def _add_bench_arguments(s) -> None:
    try:
        from kit.perf.bench import add_arguments
    except ImportError:
        return
    add_arguments(s)


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
    tolerant_stdio()
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
