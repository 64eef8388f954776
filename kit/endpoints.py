"""Where a Triton server answers: one host and three ports, and the addresses each client takes.

Triton serves HTTP/REST (KServe v2), gRPC and Prometheus metrics on three ports
(8000, 8001, 8002 by default). Clients want them in different shapes: ``urllib`` and
``httpx`` a URL (``http://host:8000``), ``tritonclient.grpc`` and ``perf_analyzer -u``
an address without a scheme (``host:8001``). :class:`Endpoints` keeps the host and the
ports and renders each shape; nothing else builds or parses them.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from pathlib import Path

GRPC_SCHEME = "grpc://"


def connect_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``.

    A server bound to every interface (``0.0.0.0``, ``::``) is reached on the loopback address.
    """
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


LISTEN_PORTS_FROM = 10000
"""The lowest port :func:`free_ports` picks (well above the registered services below it)."""
PICK_TRIES = 64  # ports tried beyond ``count`` before the kernel picks the rest
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> tuple[int, int] | None:
    """The kernel's range of ephemeral ports ``(low, high)``, inclusive; None where it cannot be read.

    Linux takes a port from this range for every outgoing connection and every ``bind(port=0)``
    (32768–60999 by default, ``ip_local_port_range`` in ip-sysctl.rst).
    """
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now; see :func:`free_ports`."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports nothing listens on now, outside the kernel's ephemeral range.

    Why outside: a port the kernel hands out is one it may hand out again, as the local end of
    any outgoing connection. A server that binds its port late, or binds it again on a restart
    (Triton binds its metrics port after its models loaded, a minute later for vLLM), could find
    it taken by the connections of its own engine. Ports from :data:`LISTEN_PORTS_FROM` up that
    lie outside :func:`ephemeral_range` are only ever taken by an explicit ``bind``. Where no such
    room is left (or the range is unknown), the kernel picks.

    The ports are free only at the moment of the call, and all are held at once while they are
    picked, so none is named twice; whoever binds them later must still cope with losing one to
    another process (:meth:`kit.server.Server.start` does).
    """
    span = ephemeral_range()
    candidates: list[int] = []
    if span is not None:
        low, high = span
        room = [p for p in range(LISTEN_PORTS_FROM, 65536) if not low <= p <= high]
        candidates = random.sample(room, min(len(room), count + PICK_TRIES))
    socks: list[socket.socket] = []
    try:
        for port in [*candidates, *[0] * count]:  # the kernel's choice (0) once the candidates ran out
            if len(socks) == count:
                break
            sock = socket.socket()
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
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
