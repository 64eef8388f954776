"""Where a Triton server answers: one host and three ports, and the addresses each client takes.

Triton serves HTTP/REST (KServe v2), gRPC and Prometheus metrics on three ports
(8000, 8001, 8002 by default). Clients want them in different shapes: ``urllib`` and
``httpx`` a URL (``http://host:8000``), ``tritonclient.grpc`` and ``perf_analyzer -u``
an address without a scheme (``host:8001``). :class:`Endpoints` keeps the host and the
ports and renders each shape; nothing else builds or parses them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

GRPC_SCHEME = "grpc://"


def connect_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``.

    A server bound to every interface (``0.0.0.0``, ``::``) is reached on the loopback address.
    """
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice); another process may take it before it is bound."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports nothing listens on now: all are held at once while the kernel picks.

    Like :func:`free_port`, the ports are free only at the moment of the call: whoever binds them
    later must cope with losing one to another process (:meth:`kit.server.Server.start` does).
    """
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def to_grpc_address(target: str) -> str:
    """``host:port`` as ``tritonclient.grpc`` and ``perf_analyzer -u`` take it.

    ``target`` is ``host:port`` or, as the command line and ``KIT_TEST_GRPC_URL`` accept it,
    ``grpc://host:port``.
    """
    return target.removeprefix(GRPC_SCHEME)


@dataclass(frozen=True)
class Endpoints:
    """A server's client-side address (``host``, never ``0.0.0.0``) and its three ports."""

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP/REST endpoint (``/v2/...``)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC endpoint, as ``tritonclient.grpc`` takes it."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """``http://host:port`` of the Prometheus metrics (``/metrics``)."""
        return f"http://{self.host}:{self.metrics_port}"

    @property
    def ports(self) -> tuple[int, int, int]:
        """HTTP, gRPC and metrics ports."""
        return self.http_port, self.grpc_port, self.metrics_port
