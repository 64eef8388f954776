"""kit.installation: the pip-installed server's environment makes its stub embed the kit's interpreter."""

from __future__ import annotations

import os
import sys

from kit import installation


def test_the_interpreters_folder_leads_path_once(tmp_path):
    """The interpreter's folder comes first; what was on PATH follows in order, without a second copy."""
    venv_bin = tmp_path / "venv" / "bin"
    path = os.pathsep.join(["/usr/bin", str(venv_bin), "", "/bin"])
    assert installation.stub_search_path(venv_bin / "python", path) == os.pathsep.join([str(venv_bin), "/usr/bin", "/bin"])
    assert installation.stub_search_path(venv_bin / "python", "") == str(venv_bin)


def test_a_linked_interpreter_keeps_its_own_folder(tmp_path):
    """A virtual environment's python may link to the base interpreter: its folder (beside pyvenv.cfg) is kept."""
    base = tmp_path / "base" / "bin"
    base.mkdir(parents=True)
    (base / "python3").write_text("")
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(base / "python3")
    assert installation.stub_search_path(venv_bin / "python", "/usr/bin").split(os.pathsep)[0] == str(venv_bin)


def test_the_pip_installed_server_gets_the_running_interpreter_first_on_path(tmp_path, monkeypatch):
    """prepare_pytriton's environment puts sys.executable's folder first on PATH, beside LD_LIBRARY_PATH."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheel = tmp_path / "site-packages" / "pytriton" / "tritonserver"
    for folder in ("bin", "backends/python", f"python_backend_stubs/{version}"):
        (wheel / folder).mkdir(parents=True)
    (wheel / "bin" / "tritonserver").write_text("")
    (wheel / "python_backend_stubs" / version / "triton_python_backend_stub").write_text("stub")
    monkeypatch.setattr(installation, "_pytriton_root", lambda: wheel)
    monkeypatch.setenv("PATH", os.pathsep.join(["/somewhere/bin", "/usr/bin"]))

    env = installation.prepare_pytriton(tmp_path / "cache").env

    folder = os.path.dirname(os.path.abspath(sys.executable))
    assert env["PATH"].split(os.pathsep) == [folder, *(p for p in ("/somewhere/bin", "/usr/bin") if p != folder)]
    assert "LD_LIBRARY_PATH" in env
