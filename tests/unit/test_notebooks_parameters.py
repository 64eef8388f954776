"""kit.notebooks.parameters: unknown parameters and wrong types refused before any kernel starts; -p values read by type."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import papermill
import pytest

from kit import notebooks
from kit.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- strict parameters (no kernel)


def test_unknown_parameter_is_an_error_before_any_kernel_starts(tmp_path, monkeypatch):
    """An undeclared parameter raises ConfigError naming it and the valid ones; papermill is never called."""
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("papermill ran"))
    with pytest.raises(ConfigError) as info:
        notebooks.run_one("03_guardrails", overrides={"case_max_tokns": 8}, out_dir=tmp_path)
    message = str(info.value)
    assert "case_max_tokns" in message and "case_max_tokens" in message and "stream_demo" in message
    assert not list(tmp_path.iterdir()), "nothing is written for a rejected run"


def test_parameters_file_key_no_notebook_declares_is_an_error(tmp_path, monkeypatch):
    """A parameters-file key that no notebook declares is an error naming it."""
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("papermill ran"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: cpu\nconcurency: [1, 2]\n")
    for call in (lambda: notebooks.demo(params_file=bad, out_dir=tmp_path / "r"),
                 lambda: notebooks.run_one("01", params_file=bad, out_dir=tmp_path / "r")):
        with pytest.raises(ConfigError, match="concurency"):
            call()
    assert not (tmp_path / "r").exists()


def test_parameters_file_feeds_each_notebook_only_its_own_keys(tmp_path, monkeypatch):
    """From one flat file each notebook gets exactly the keys it declares."""
    calls = []

    def fake_execute(input_path, output_path, parameters=None, **kwargs):
        calls.append((Path(input_path).stem, parameters))
        nb = nbformat.read(input_path, as_version=4)
        nbformat.write(nb, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    params = tmp_path / "p.yaml"
    params.write_text("profile: cpu\ncase_max_tokens: 4\nconcurrency: [1]\npipeline_instances: 3\n")
    notebooks.run_one("03_guardrails", params_file=params, out_dir=tmp_path / "r")
    name, injected = calls[0]
    assert name == "03_guardrails"
    assert injected == {"case_max_tokens": 4, "report_dir": str(next((tmp_path / "r").glob("2*")).resolve())}


def test_a_run_folder_inside_the_checkout_is_injected_relative(monkeypatch):
    """Reports under the checkout show report_dir from its root, not the machine's absolute path."""
    calls = []

    def fake_execute(input_path, output_path, parameters=None, **kwargs):
        calls.append(parameters)
        nbformat.write(nbformat.read(input_path, as_version=4), output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    out = ROOT / "reports" / "test-relative-report-dir"
    try:
        notebooks.run_one("03_guardrails", out_dir=out)
        shown = Path(calls[0]["report_dir"])
        assert not shown.is_absolute() and shown.parts[:2] == ("reports", "test-relative-report-dir")
        assert notebooks.project_path(shown) == next(out.glob("2*")).resolve()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_wrong_type_is_an_error():
    """A value of the wrong type (a string where a list is declared) is rejected with the expected type."""
    with pytest.raises(ConfigError, match="concurrency must be list"):
        notebooks.check_parameters("04", {"concurrency": "1,2"})
    with pytest.raises(ConfigError, match="must be int"):
        notebooks.check_parameters("03", {"case_max_tokens": True})
    notebooks.check_parameters("03", {"case_max_tokens": 8, "stream_demo": False})


def test_report_dir_is_reserved_for_the_runner():
    """report_dir is the run folder; a parameters file may not set it."""
    with pytest.raises(ConfigError, match="report_dir"):
        notebooks.split_parameters(notebooks.DEMO_NOTEBOOKS, {"report_dir": "/elsewhere"})


@pytest.mark.parametrize(
    "text, value",
    [("8", 8), ("0.5", 0.5), ("true", True), ("False", False), ("[1, 2, 4]", [1, 2, 4]), ("hello", "hello"),
     ("{a: 1}", {"a": 1}), ("", ""), ("null", None), ("2024-01-01", "2024-01-01"), ("a: b: c", "a: b: c"),
     ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct"), ("'8'", "8"), ("010", 10),
     ("no", "no")],
)
def test_parse_value_without_a_type_reads_yaml_scalars(text, value):
    """A value for an undeclared type is read as YAML 1.2; text YAML cannot read stays a string."""
    assert notebooks.parse_value(text) == value


@pytest.mark.parametrize(
    "text, type_name, value",
    [("Answer briefly: what is Triton?", "str", "Answer briefly: what is Triton?"), ("- a", "str", "- a"),
     ("1.10", "str", "1.10"), ("no", "str", "no"), ("", "str", ""), ("010", "int", 10), (" 8 ", "int", 8),
     ("1e3", "float", 1000.0), ("2", "float", 2.0), ("Yes", "bool", True), ("off", "bool", False),
     ("[1, 010]", "list", [1, 10]), ("{a: no}", "dict", {"a": "no"})],
)
def test_parse_value_reads_the_declared_type(text, type_name, value):
    """A value is read by its declared type: str as typed, int in decimal, bool from the usual words."""
    parsed = notebooks.parse_value(text, type_name)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text, type_name", [("08x", "int"), ("1.5", "int"), ("fast", "float"), ("maybe", "bool"),
                                             ("1,2", "list"), ("[1]", "dict"), ("[1,", "list")])
def test_parse_value_refuses_what_its_type_cannot_read(text, type_name):
    """Text the declared type cannot read is a ConfigError naming the parameter and the type."""
    with pytest.raises(ConfigError, match=f"first_max_tokens must be {type_name}|first_max_tokens is not valid YAML"):
        notebooks.parse_value(text, type_name, name="first_max_tokens")


def test_notebook_names_resolve():
    """A notebook is found by prefix, stem, file name or path; an unknown one lists the choices."""
    path = ROOT / "notebooks" / "03_guardrails.ipynb"
    for name in ("03", "03_guardrails", "03_guardrails.ipynb", str(path)):
        assert notebooks.notebook_path(name) == path
    with pytest.raises(ConfigError, match="04_performance"):
        notebooks.notebook_path("09")


def test_project_path_is_relative_to_the_checkout():
    """Relative path parameters mean the same thing from the command line and from JupyterLab."""
    assert notebooks.project_path("benchmarks/results/h200") == ROOT / "benchmarks" / "results" / "h200"
    assert notebooks.project_path("/abs/x") == Path("/abs/x")


def test_parse_overrides_refuses_a_value_its_type_cannot_read():
    """parse_overrides reads each -p value by its notebook's declared type and names the parameter when it cannot."""
    assert notebooks.parse_overrides("02", [("first_max_tokens", "010"), ("model", "1.10")]) == {
        "first_max_tokens": 10, "model": "1.10"}
    for notebook, name, value, kind in (("02", "first_max_tokens", "8.5", "int"), ("03", "stream_demo", "maybe", "bool"),
                                        ("04", "concurrency", "1,2", "list")):
        with pytest.raises(ConfigError, match=f"parameter {name} must be {kind}"):
            notebooks.parse_overrides(notebook, [(name, value)])
