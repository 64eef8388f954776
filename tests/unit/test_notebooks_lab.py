"""kit.notebooks.lab and kit.notebooks.kernel: ``make lab`` starts JupyterLab, as root too, with the project's kernel."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from kit import notebooks
from kit.notebooks import kernel, lab


def test_allow_root_only_as_root():
    """JupyterLab refuses root without --allow-root: the flag is added as root and only then."""
    assert "--allow-root" in lab.command(as_root=True)
    assert "--allow-root" not in lab.command(as_root=False)
    assert ("--allow-root" in lab.command()) == (os.geteuid() == 0)
    assert lab.command(["--no-browser"], as_root=False)[-1] == "--no-browser"


def test_the_notebooks_name_the_project_kernel():
    """The committed notebooks, the runner and JupyterLab agree on the project's kernel."""
    for path in sorted(notebooks.NOTEBOOKS_DIR.glob("*.ipynb")):
        assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == kernel.KERNEL_NAME, path.name
    spec = kernel.ProjectKernelSpecs().get_kernel_spec(kernel.KERNEL_NAME)
    assert spec.argv[0] == sys.executable and spec.display_name == kernel.DISPLAY_NAME


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def running_lab(tmp_path):
    """JupyterLab started headless the way `make lab` starts it (as whoever runs the tests), on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = uuid.uuid4().hex
    env = {**lab.environment(), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    args = lab.command(["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--LabApp.news_url="])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "wb"),
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_lab_serves_the_four_notebooks_and_the_project_kernel(running_lab):
    """Headless JupyterLab lists the four notebooks and offers the project's kernel (this interpreter) by default."""
    base, token = running_lab
    names = {item["name"] for item in _get(f"{base}/api/contents?token={token}")["content"]}
    assert {f"{name}.ipynb" for name in notebooks.DEMO_NOTEBOOKS} <= names
    specs = _get(f"{base}/api/kernelspecs?token={token}")
    assert specs["default"] == kernel.KERNEL_NAME
    assert specs["kernelspecs"][kernel.KERNEL_NAME]["spec"]["argv"][0] == sys.executable
    assert "JupyterLab" in urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10).read().decode()


def test_the_project_kernel_imports_the_kit_where_it_is_not_installed(tmp_path):
    """A kernel started outside the checkout imports this checkout's kit even without an install (``-S``: no site)."""
    import os
    import subprocess

    spec = kernel.ProjectKernelSpecs().get_kernel_spec(kernel.KERNEL_NAME)
    probe = [sys.executable, "-S", "-c", "import kit, pathlib; print(pathlib.Path(kit.__file__).parent.parent)"]
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert subprocess.run(probe, cwd=tmp_path, env=bare, capture_output=True).returncode != 0  # the situation
    found = subprocess.run(probe, cwd=tmp_path, env={**bare, **spec.env}, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(kernel.PROJECT_ROOT)
