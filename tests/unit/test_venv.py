"""kit.venv: the pins and the order they are installed in."""

import re
from pathlib import Path

import yaml

from kit import venv

ROOT = Path(__file__).resolve().parents[2]


def _names(pins):
    return {re.split(r"[=<>\[ ]", p, maxsplit=1)[0].lower().replace("_", "-") for p in pins}


def test_pins_are_read_with_and_without_tomllib(monkeypatch):
    """The fallback parser (Python 3.10 has no tomllib) reads the same pins as tomllib."""
    with_tomllib = venv.read_pins()
    import builtins

    real_import = builtins.__import__

    def no_tomllib(name, *args, **kwargs):
        if name == "tomllib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tomllib)
    assert venv.read_pins() == with_tomllib
    assert {"base", "cpu", "gpu", "server", "deploy"} <= set(with_tomllib)


def test_every_dependency_is_pinned_exactly():
    """Every package is pinned with == so a fresh machine gets what was tested."""
    for group, pins in venv.read_pins().items():
        for pin in pins:
            assert "==" in pin, f"{group}: {pin} is not pinned"


def test_environment_yml_lists_the_same_packages_as_pyproject():
    """environment.yml (conda) and pyproject.toml (pip) describe the same environment."""
    pins = venv.read_pins()
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert set(pip_list) == set(pins["base"]) | set(pins["cpu"]) | set(pins["deploy"])
    assert _names(pins["base"]) >= {"numpy", "tritonclient", "better-profanity", "huggingface-hub", "papermill",
                                   "nbconvert", "jupyterlab", "ipykernel", "plotly", "pandas", "pytest"}


def test_numpy_stays_below_2():
    """Triton 2.51's Python backend crashes under numpy 2: the pin must keep numpy < 2."""
    numpy_pin = next(p for p in venv.read_pins()["base"] if p.startswith("numpy"))
    assert numpy_pin.split("==")[1].startswith("1.")
    import numpy

    assert int(numpy.__version__.split(".")[0]) < 2


def test_profile_follows_nvidia_smi(monkeypatch):
    """No nvidia-smi means the CPU profile; KIT_PROFILE overrides detection."""
    monkeypatch.delenv("KIT_PROFILE", raising=False)
    monkeypatch.setattr(venv.shutil, "which", lambda name: None)
    assert venv.has_gpu() is False
    monkeypatch.setattr(venv.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert venv.has_gpu() is True
    monkeypatch.setenv("KIT_PROFILE", "cpu")
    assert venv.has_gpu() is False


def test_missing_libb64_without_root_prints_the_command(monkeypatch):
    """Without root, a missing libb64-0d stops set-up with the exact apt-get command."""
    monkeypatch.setattr(venv, "has_library", lambda soname: False)
    monkeypatch.setattr(venv.os, "geteuid", lambda: 1000)
    try:
        venv.ensure_apt_packages()
    except SystemExit as exc:
        assert "sudo apt-get install -y --no-install-recommends libb64-0d" in str(exc.code)
    else:
        raise AssertionError("set-up went on without libb64")
