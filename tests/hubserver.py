"""A local hub-style HTTP server for offline download tests.

It serves a folder the way the Hugging Face hub serves a model repository
(the revision API, then ``HEAD``/``GET`` of ``resolve/<sha>/<file>``), and
insists on a bearer token like a gated model does, so
``kit.weights.download_model`` runs its real ``huggingface_hub`` code path
with no network.
"""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHA = "0123456789abcdef0123456789abcdef01234567"


def _handler(repo_id: str, folder: Path, token: str, seen: list):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _authorised(self) -> bool:
            seen.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("Content-Type", "application/json")
                body = b'{"error": "Access to model is restricted. You must have access to it."}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return False
            return True

        def _json(self, value) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self):
            prefix = f"/{repo_id}/resolve/"
            if not self.path.startswith(prefix):
                return None
            name = self.path[len(prefix):].split("/", 1)[1].split("?")[0]
            path = folder / name
            return path if path.is_file() else None

        def _file_headers(self, path: Path) -> None:
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("X-Repo-Commit", SHA)
            self.end_headers()

        def _serve_file(self, with_body: bool) -> None:
            path = self._file()
            if path is None:
                self.send_response(404)
                self.end_headers()
                return
            self._file_headers(path)
            if with_body:
                self.wfile.write(path.read_bytes())

        def do_HEAD(self):
            if self._authorised():
                self._serve_file(with_body=False)

        def do_GET(self):
            if not self._authorised():
                return
            if self.path.startswith(f"/api/models/{repo_id}/tree/"):
                files = [p for p in sorted(folder.iterdir()) if p.is_file()]
                self._json([
                    {"type": "file", "path": p.name, "size": p.stat().st_size,
                     "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                    for p in files
                ])
                return
            if self.path.startswith(f"/api/models/{repo_id}"):
                self._json({
                    "id": repo_id, "sha": SHA,
                    "siblings": [{"rfilename": p.name} for p in sorted(folder.iterdir()) if p.is_file()],
                })
                return
            self._serve_file(with_body=True)

    return Handler


@contextmanager
def hub(repo_id: str, folder: Path, token: str):
    """Serve ``folder`` as hub repository ``repo_id``; yields ``(endpoint_url, authorization_headers_seen)``."""
    seen: list[str] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repo_id, Path(folder), token, seen))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
