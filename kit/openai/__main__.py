"""``python -m kit.openai --grpc-url 127.0.0.1:8001 [--host H] [--port P] [--workers N]``: the service alone."""

from __future__ import annotations

import argparse
import os
import sys

from kit.openai.service import DEFAULT_PORT

GRPC_URL_VARIABLE = "KIT_OPENAI_GRPC_URL"
TOKENIZER_VARIABLE = "KIT_OPENAI_TOKENIZER"


def app_from_environment():
    """The application as each uvicorn worker process builds it (settings from the environment)."""
    from kit.openai.app import API_KEY_VARIABLES, Settings, create_app
    from kit.weights import read_secret

    return create_app(Settings(grpc_url=os.environ[GRPC_URL_VARIABLE], api_key=read_secret(API_KEY_VARIABLES),
                               tokenizer=os.environ.get(TOKENIZER_VARIABLE) or None))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kit.openai", description=__doc__.splitlines()[0])
    p.add_argument("--grpc-url", default="127.0.0.1:8001", help="Triton's gRPC endpoint, host:port (or grpc://host:port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--tokenizer", default=None,
                   help="folder whose chat template formats messages (default: the pipeline's tokenizer)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port (one event loop each; a GPU serving hundreds of "
                        "streams sends more chunks per second than one Python process writes)")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be ≥ 1")

    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: binding to {args.host} exposes the API to the network; set KIT_OPENAI_API_KEY "
              "and put TLS in front", file=sys.stderr)
    os.environ[GRPC_URL_VARIABLE] = args.grpc_url
    os.environ[TOKENIZER_VARIABLE] = args.tokenizer or ""
    uvicorn.run("kit.openai.__main__:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
