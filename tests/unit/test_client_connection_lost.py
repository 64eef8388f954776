"""kit.client: a connection that breaks mid-request ends with an error that says so (the server is not needed)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from localhttp import QuietHandler, serving

from kit.client import Client, _grpc_error
from kit.exceptions import InferenceError


class _Breaks(QuietHandler):
    """Answers 200 and one server-sent event, then drops the connection (a server killed mid-stream)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        event = b'data: {"text_output": "half"}\n\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def breaking_server():
    with serving(_Breaks) as url:
        yield url


def test_http_stream_cut_mid_answer(breaking_server):
    """A stream whose connection drops after the first event raises 'connection ... lost mid-request'."""
    client = Client(http_url=breaking_server, protocol="http", timeout_s=10)
    seen = []
    with pytest.raises(InferenceError, match="connection to the server was lost mid-request") as info:
        for delta in client.stream("hi", max_tokens=4):
            seen.append(delta.text)
    assert seen == ["half"] and info.value.status == "UNAVAILABLE"


def test_http_server_gone():
    """Nothing listening: the same clear error, not a bare URLError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(http_url=f"http://127.0.0.1:{port}", protocol="http", timeout_s=5)
    with pytest.raises(InferenceError, match="stopped or restarted"):
        client.generate("hi", max_tokens=4)


def test_grpc_unavailable_says_the_connection_was_lost():
    """gRPC's UNAVAILABLE becomes the connection-lost message; other errors keep the server's words."""
    lost = _grpc_error("m", SimpleNamespace(status=lambda: "StatusCode.UNAVAILABLE", message=lambda: "Socket closed"))
    assert "lost mid-request (Socket closed)" in str(lost) and str(lost).startswith("m: ")
    other = _grpc_error("m", SimpleNamespace(status=lambda: "StatusCode.INVALID_ARGUMENT", message=lambda: "bad"))
    assert str(other) == "m: bad"
