"""kit.server's command line (the server itself is exercised by the integration tests)."""

from __future__ import annotations

from kit import server as srv


def test_command_sets_the_drain_period(tmp_path):
    """The server's command line carries Triton's exit timeout, the drain period."""
    server = srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path), drain_s=7)
    assert "--exit-timeout-secs=7" in server.command()
