"""Offline bundles: every wheel an air-gapped host needs, and their installation there.

``python -m kit bundle --python 3.12 --cuda --out DIR`` resolves the kit's pins
for the target interpreter and platform (without installing anything here),
leaves out what the target already has (``--have``, by default the CUDA
stack of a PyTorch image: torch, triton, nvidia-*), downloads each wheel, and
splits files larger than ``--chunk-mb`` so they fit transfer limits.
``python -m kit bundle --install DIR --target SITE`` reassembles and checks
the pieces on the target and installs them with ``pip --no-index``.

Resolution happens in groups, as in ``make setup``: the engine (vLLM) and the
rest (with ``numpy==1.26.4``) cannot be resolved in one go; the explicit pins
win where the groups disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from kit.exceptions import ConfigError, SetupError
from kit.venv import read_pins

MANIFEST = "MANIFEST.json"
# What a CUDA PyTorch image already has, and the optional GPU kernels the
# kit's Llama path does not use (vLLM runs without them; see the README).
CUDA_IMAGE_HAS = (
    "torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*",
    "flashinfer-python", "flashinfer-cubin", "tilelang", "fastsafetensors", "quack-kernels",
    "tokenspeed-mla", "humming-kernels",
)
# Only what serving and benchmarking need on the host (no notebooks, no test tools).
SERVE_PACKAGES = ("numpy", "tritonclient", "nvidia-cuda-runtime-cu12", "better-profanity", "huggingface-hub",
                  "pandas", "pyyaml", "tqdm")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_flags(python: str) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    # pip matches platform tags exactly: list every glibc baseline up to the target's
    for minor in range(39, 4, -1):
        flags += ["--platform", f"manylinux_2_{minor}_x86_64"]
    flags += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64"]
    return flags


def requirements(cuda: bool, full: bool = False) -> list[list[str]]:
    """The requirement groups to resolve, engine first."""
    pins = read_pins()
    base = pins["base"] if full else [p for p in pins["base"] if _norm(re.split(r"[=<>\[]", p)[0]) in SERVE_PACKAGES]
    if not full:  # the HTTP extra needs geventhttpclient<=2.0.2, which has no wheels for newer Pythons
        base = [p.replace("tritonclient[all]", "tritonclient[grpc]") for p in base]
    return [pins["gpu" if cuda else "cpu"], base]


def resolve(group: list[str], python: str) -> dict[str, str]:
    """name → version that pip would install for ``group`` on the target (nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--target", str(Path(tmp) / "t"), *platform_flags(python), *group]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"pip could not resolve {group} for Python {python}:\n{result.stderr[-2000:]}")
        data = json.loads(report.read_text())
    return {_norm(item["metadata"]["name"]): item["metadata"]["version"] for item in data["install"]}


def excluded(name: str, have: tuple[str, ...]) -> bool:
    for pattern in have:
        pattern = _norm(pattern.split("==")[0])
        if pattern.endswith("*") and name.startswith(pattern[:-1]) or name == pattern:
            return True
    return False


def read_freeze(path: Path) -> dict[str, str]:
    """name → version from ``pip list --format=freeze`` output taken on the target."""
    out = {}
    for line in Path(path).read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            out[_norm(name)] = version
    return out


def _major(version: str) -> str:
    return version.split(".")[0]


def gather(out: Path, *, python: str, cuda: bool, have: tuple[str, ...], chunk_mb: int, full: bool = False,
           target_has: dict[str, str] | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, str] = {}
    for group in requirements(cuda, full):
        wanted.update(resolve(group, python))  # later groups (explicit pins such as numpy<2) win
    pins = read_pins()
    server = dict(re.split(r"==", p, maxsplit=1) for p in pins["server"])
    server = {_norm(k): v for k, v in server.items()}
    wanted.update(server)  # the server binary, without its Python deps
    explicit = {_norm(re.split(r"[=<>\[]", p)[0]) for group in requirements(cuda, full) for p in group} | set(server)
    target_has = target_has or {}
    chosen = {
        n: v for n, v in sorted(wanted.items())
        if n in explicit  # the kit's own pins always travel
        or not (excluded(n, have) or (n in target_has and _major(target_has[n]) == _major(v)))
    }
    print(f"{len(chosen)} wheels for Python {python} ({'CUDA' if cuda else 'CPU'}); left out: "
          f"{sorted(set(wanted) - set(chosen))}", flush=True)
    for name, version in chosen.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(out),
                        *platform_flags(python), f"{name}=={version}"], check=True)
    return split(out, chunk_mb)


def split(folder: Path, chunk_mb: int) -> dict:
    """Cut wheels larger than ``chunk_mb`` into numbered parts; write the manifest (sha256 of each wheel)."""
    limit = chunk_mb * 1024 * 1024
    manifest = {"wheels": {}}
    for wheel in sorted(folder.glob("*.whl")):
        data = wheel.read_bytes()
        entry = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "parts": []}
        if len(data) > limit:
            for i in range(0, len(data), limit):
                part = folder / f"{wheel.name}.part{i // limit:02d}"
                part.write_bytes(data[i:i + limit])
                entry["parts"].append(part.name)
            wheel.unlink()
        manifest["wheels"][wheel.name] = entry
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def reassemble(folder: Path) -> list[Path]:
    """Join split wheels and check every wheel's sha256 against the manifest."""
    manifest = json.loads((folder / MANIFEST).read_text())
    wheels = []
    for name, entry in manifest["wheels"].items():
        path = folder / name
        if entry["parts"]:
            missing = [p for p in entry["parts"] if not (folder / p).is_file()]
            if missing and not path.is_file():
                raise SetupError(f"{name}: parts {missing} are missing from {folder}; copy them over too")
            if not path.is_file():
                with open(path, "wb") as whole:
                    for part in entry["parts"]:
                        whole.write((folder / part).read_bytes())
        if not path.is_file():
            raise SetupError(f"{name} is missing from {folder}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise SetupError(f"{name} is corrupt (sha256 {digest[:12]}…, expected {entry['sha256'][:12]}…); copy it again")
        wheels.append(path)
    return wheels


def install(folder: Path, target: Path) -> None:
    wheels = reassemble(folder)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *map(str, wheels)], check=True)
    print(f"installed {len(wheels)} wheels into {target}; put it first on PYTHONPATH")


def add_arguments(parser) -> None:
    parser.add_argument("--python", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="target interpreter version, e.g. 3.12")
    parser.add_argument("--cuda", action="store_true", help="the CUDA build of vLLM (default: the CPU build)")
    parser.add_argument("--out", help="folder for the wheels")
    parser.add_argument("--have", default=None,
                        help="comma-separated packages the target already has (default for --cuda: torch, triton, nvidia-*, …)")
    parser.add_argument("--have-freeze", metavar="FILE",
                        help="`pip list --format=freeze` of the target: packages it has (same major version) stay out")
    parser.add_argument("--full", action="store_true", help="also notebooks and test tools (default: serving only)")
    parser.add_argument("--chunk-mb", type=int, default=60, help="split wheels larger than this")
    parser.add_argument("--install", metavar="DIR", help="on the target: reassemble and install the bundle in DIR")
    parser.add_argument("--target", default="site", help="with --install: the folder to install into")


def main(args) -> None:
    if args.install:
        install(Path(args.install), Path(args.target))
        return
    if not args.out:
        raise ConfigError("give --out DIR for the bundle")
    have = tuple(h.strip() for h in args.have.split(",")) if args.have else (CUDA_IMAGE_HAS if args.cuda else ())
    manifest = gather(Path(args.out), python=args.python, cuda=args.cuda, have=have, chunk_mb=args.chunk_mb,
                      full=args.full, target_has=read_freeze(Path(args.have_freeze)) if args.have_freeze else None)
    total = sum(w["size"] for w in manifest["wheels"].values())
    print(f"bundle ready: {len(manifest['wheels'])} wheels, {total / 2**20:.0f} MiB in {args.out}")
