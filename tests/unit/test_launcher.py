"""kit.launcher: one command line and one environment for kit serve and the container."""

from __future__ import annotations

from kit import container, launcher
from kit import server as srv

CANARY = "hf_CanaryLauncherTest0123456789abcdef"


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv[1:] if "=" in a)


def test_both_runtimes_share_shm_drain_and_metrics(tmp_path):
    """kit serve and the container pass the same shared-memory sizes, exit timeout and metrics flag."""
    server = srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path / "backends"))
    local = server.command()
    image = container.tritonserver_command(container.Settings(), tmp_path)
    for flag in (f"--backend-config=python,shm-default-byte-size={launcher.SHM_DEFAULT_BYTES}",
                 f"--backend-config=python,shm-growth-byte-size={launcher.SHM_GROWTH_BYTES}",
                 f"--exit-timeout-secs={launcher.DRAIN_S}", "--allow-metrics=true"):
        assert flag in local and flag in image, flag
    assert _flags(image)["--http-port"] == "8000" and "--http-address" not in _flags(image)
    assert _flags(local)["--http-address"] == "127.0.0.1"
    assert _flags(local)["--backend-directory"] == str(tmp_path / "backends")
    assert any("shm-region-prefix-name=kit" in a for a in local) and not any("prefix" in a for a in image)


def test_extra_arguments_come_last():
    """A flag given again in extra_args follows the launcher's own, so the user's value wins."""
    argv = launcher.command("tritonserver", launcher.Launch("/r", 1, 2, 3, extra_args=("--exit-timeout-secs=5",)))
    assert argv[-1] == "--exit-timeout-secs=5"
    assert argv.index(f"--exit-timeout-secs={launcher.DRAIN_S}") < len(argv) - 1


def test_environments_drop_the_token(tmp_path, monkeypatch):
    """Neither runtime's server environment holds the hub token; both are unbuffered and UTF-8."""
    monkeypatch.setenv("HUGGINGFACE_HUB_TOKEN", CANARY)
    monkeypatch.setenv("HF_TOKEN", CANARY)
    server = srv.Server(tmp_path, installation=srv.Installation(tmp_path / "tritonserver", tmp_path))
    for env in (server.environment(), container.server_environment()):
        assert CANARY not in env.values()
        assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONIOENCODING"] == "utf-8"
    assert server.environment()["KIT_PYTHONPATH"]


def test_remove_shared_memory_unlinks_only_that_servers_regions(tmp_path, monkeypatch):
    """Regions named with the server's prefix go; another server's, and an empty prefix, are left alone."""
    monkeypatch.setattr(launcher, "SHM_DIR", tmp_path)
    for name in ("kit11_8000_a", "kit11_8000_b", "kit11_80000_c", "kit12_8000_d"):
        (tmp_path / name).write_bytes(b"x")
    assert launcher.remove_shared_memory("kit11_8000_") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit11_80000_c", "kit12_8000_d"]
    assert launcher.remove_shared_memory("") == 0 and len(list(tmp_path.iterdir())) == 2
