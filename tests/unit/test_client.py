"""kit.client: request tensors and the HTTP path's checks (no server)."""

import pytest

from kit.client import Client
from kit.exceptions import RequestError

INVALID_UTF8 = b"\xff\xfe caf\xe9"


@pytest.mark.parametrize("call", ["generate", "stream", "generate-streamed"])
def test_http_refuses_bytes_that_are_not_utf8(call):
    """Over HTTP, a prompt that is not UTF-8 is refused before anything is sent (the gRPC path's server refuses it)."""
    # nothing listens on port 1: a request that reached the network would fail with another error
    client = Client("grpc://127.0.0.1:1", "http://127.0.0.1:1", protocol="http")
    with pytest.raises(RequestError, match="text_input.*not valid UTF-8"):
        if call == "generate":
            client.generate(INVALID_UTF8)
        elif call == "stream":
            list(client.stream(INVALID_UTF8))
        else:
            client.generate(INVALID_UTF8, stream=True)
