"""``python -m kit.openai --grpc-url grpc://127.0.0.1:8001 [--host H] [--port P]``: the service on its own."""

from __future__ import annotations

import argparse
import sys

from kit.openai.service import DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kit.openai", description=__doc__.splitlines()[0])
    p.add_argument("--grpc-url", default="grpc://127.0.0.1:8001", help="Triton's gRPC endpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--tokenizer", default=None,
                   help="folder whose chat template formats messages (default: the pipeline's tokenizer)")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)

    import uvicorn

    from kit.models import read_secret
    from kit.openai.app import API_KEY_VARIABLES, Settings, create_app

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: binding to {args.host} exposes the API to the network; set KIT_OPENAI_API_KEY "
              "and put TLS in front", file=sys.stderr)
    settings = Settings(grpc_url=args.grpc_url, api_key=read_secret(API_KEY_VARIABLES), tokenizer=args.tokenizer)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
