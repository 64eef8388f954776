"""kit.endpoints: one host and three ports, rendered in each client's shape."""

from __future__ import annotations

import socket

import pytest

from kit import endpoints
from kit.endpoints import Endpoints, connect_host, free_port, free_ports, to_grpc_address


def test_endpoints_render_each_clients_address():
    """HTTP and metrics are URLs; gRPC is host:port without a scheme, as tritonclient.grpc takes it."""
    endpoints = Endpoints("127.0.0.1", 8000, 8001, 8002)
    assert endpoints.http_url == "http://127.0.0.1:8000"
    assert endpoints.grpc_address == "127.0.0.1:8001"
    assert endpoints.metrics_url == "http://127.0.0.1:8002"
    assert endpoints.ports == (8000, 8001, 8002)


def test_grpc_address_accepts_the_command_lines_scheme():
    """grpc://host:port (the command line's and KIT_TEST_GRPC_URL's form) and host:port give the same address."""
    assert to_grpc_address("grpc://triton:8001") == to_grpc_address("triton:8001") == "triton:8001"


def test_a_server_on_every_interface_is_reached_on_loopback():
    """0.0.0.0 and :: are bind addresses, not addresses to connect to; others are kept."""
    assert connect_host("0.0.0.0") == connect_host("::") == "127.0.0.1"
    assert connect_host("10.0.0.5") == "10.0.0.5"


def _bindable(ports):
    socks = [socket.socket() for _ in ports]
    try:
        for sock, port in zip(socks, ports, strict=True):
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in socks:
            sock.close()


def test_free_port_can_be_bound():
    """The port free_port names can be bound right away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_free_ports_are_distinct_and_can_be_bound():
    """free_ports holds its sockets together, so the kernel never names one port twice."""
    ports = free_ports(3)
    assert len(set(ports)) == 3
    _bindable(ports)


def test_free_ports_lie_outside_the_ephemeral_range(tmp_path, monkeypatch):
    """Outgoing connections take their local port from the ephemeral range, so the kit's ports stay out of it."""
    span = tmp_path / "ip_local_port_range"
    span.write_text("32768\t60999\n")
    monkeypatch.setattr(endpoints, "EPHEMERAL_RANGE_FILE", span)
    assert endpoints.ephemeral_range() == (32768, 60999)
    for _ in range(20):
        ports = free_ports(3)
        assert len(set(ports)) == 3
        assert all(endpoints.LISTEN_PORTS_FROM <= p < 32768 or p > 60999 for p in ports), ports
        _bindable(ports)


@pytest.mark.parametrize("content", ["1024 65535\n", None, "garbage\n"])
def test_free_ports_fall_back_to_the_kernels_choice(tmp_path, monkeypatch, content):
    """With no room outside the range, or no range to read, the kernel picks: still distinct, still free."""
    span = tmp_path / "ip_local_port_range"
    if content is not None:
        span.write_text(content)
    monkeypatch.setattr(endpoints, "EPHEMERAL_RANGE_FILE", span)
    ports = free_ports(4)
    assert len(set(ports)) == 4
    _bindable(ports)
