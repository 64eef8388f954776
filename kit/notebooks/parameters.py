"""The notebooks' parameters: which notebook, which parameters it declares, and values checked by type.

papermill only warns about parameters a notebook does not declare; here they
are an error (:class:`~kit.exceptions.ConfigError`) raised before any kernel
starts, as is a value of the wrong type. A value typed on the command line
(``-p name value``) is read by the type its notebook declares: text for a
``str`` parameter, exactly as typed (``-p first_prompt "Answer briefly: what
is Triton?"``), a decimal number for an ``int`` (``010`` is ten), and so on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kit import params as kit_params
from kit.exceptions import ConfigError
from kit.weights import project_root

NOTEBOOKS_DIR = project_root() / "notebooks"
DEMO_NOTEBOOKS = (
    "01_build_model_repository",
    "02_start_server",
    "03_guardrails",
    "04_performance",
)
RUNNER_PARAMETERS = ("report_dir",)
"""Parameters the runner sets itself (the run folder); a parameters file cannot."""

PY_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list, tuple),
    "dict": (dict,),
}
"""The Python types a value may have for each type name papermill infers from an annotation."""

_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_value(text: str, type_name: str | None = None, *, name: str = "the value") -> Any:
    """A ``-p name value`` value read by its declared type.

    ``str``: the text as typed. ``int``: a decimal integer (``010`` → 10).
    ``float``: a decimal number. ``bool``: true/false, yes/no, on/off, 1/0.
    ``list``/``dict``: YAML (``[1, 2, 4]``, ``{a: 1}``) read by
    :func:`kit.params.loads`. Without a declared type the text is read as a
    YAML scalar, list or mapping, and stays text when it is none of those.
    Raises :class:`ConfigError` naming ``name`` and the type when the text
    does not parse.
    """
    if type_name == "str":
        return text
    if type_name in ("int", "float"):
        try:
            return int(text.strip(), 10) if type_name == "int" else float(text.strip())
        except ValueError:
            example = "8" if type_name == "int" else "0.5"
            raise ConfigError(f"{name} must be {type_name} (e.g. {example}), got {text!r}") from None
    if type_name == "bool":
        value = _BOOL_WORDS.get(text.strip().lower())
        if value is None:
            raise ConfigError(f"{name} must be bool (true or false), got {text!r}")
        return value
    try:
        value = kit_params.loads(text, name)
    except ConfigError:
        if type_name in ("list", "dict"):
            raise
        return text
    if type_name in ("list", "dict"):
        if not isinstance(value, PY_TYPES[type_name]):
            example = "[1, 2, 4]" if type_name == "list" else "{key: value}"
            raise ConfigError(f"{name} must be {type_name} (YAML such as {example}), got {text!r}")
        return value
    if value is None and text.strip() not in ("null", "Null", "NULL", "~"):
        return text  # an empty value is the empty string, not None
    return value if isinstance(value, (bool, int, float, str, list, dict, type(None))) else text


def parse_overrides(notebook: str | Path, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``-p name value`` pairs for ``notebook``, each value read by the type the notebook declares for it.

    A name the notebook does not declare is read without a type here and
    refused by :func:`check_parameters`, which lists the notebook's parameters.
    """
    path = notebook_path(notebook)
    declared = declared_parameters(path)
    out = {}
    for name, text in pairs:
        type_name = declared.get(name, {}).get("inferred_type_name")
        out[name] = parse_value(text, type_name, name=f"{path.stem}: parameter {name}")
    return out


def project_path(text: str | Path) -> Path:
    """A path parameter as the notebooks read it: absolute as given, relative to the checkout's root otherwise.

    The notebooks run with ``notebooks/`` as their working directory (as in
    JupyterLab), but paths in parameters files and on the command line are
    written from the root: ``benchmarks/results/h100``, ``models/tiny-llama``.
    """
    path = Path(text).expanduser()
    return path if path.is_absolute() else project_root() / path


def notebook_path(notebook: str | Path) -> Path:
    """The notebook a user means: a path, a file name, a stem (``03_guardrails``) or a prefix (``03``)."""
    path = Path(notebook)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    candidates = [NOTEBOOKS_DIR / path.name, NOTEBOOKS_DIR / f"{path.name}.ipynb"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    matches = sorted(NOTEBOOKS_DIR.glob(f"{path.name}*.ipynb"))
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.stem for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")))
    raise ConfigError(f"no notebook {notebook!r}; choose one of: {known}")


def all_notebooks() -> list[Path]:
    """The numbered notebooks in ``notebooks/``, in order."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def declared_parameters(notebook: str | Path) -> dict[str, dict[str, str]]:
    """The parameters a notebook's ``parameters`` cell declares: name → type, default, help."""
    import papermill

    path = notebook_path(notebook)
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:  # noqa: BLE001 - papermill raises several kinds for broken files
        raise ConfigError(f"cannot read the parameters of {path.name}: {exc}") from None
    return {name: dict(info) for name, info in found.items()}


def check_parameters(notebook: str | Path, parameters: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a parameter the notebook does not declare or a value of the wrong type."""
    path = notebook_path(notebook)
    declared = declared_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ConfigError(
            f"{path.stem} has no parameter(s) {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(set(declared) - set(RUNNER_PARAMETERS))) or '(none)'}"
        )
    for name, value in parameters.items():
        type_name = declared[name].get("inferred_type_name", "None")
        expected = PY_TYPES.get(type_name)
        if expected is None or value is None:
            continue
        wrong = not isinstance(value, expected) or (type_name in ("int", "float") and isinstance(value, bool))
        if wrong:
            hint = "; quote it in YAML to keep it text" if type_name == "str" else ""
            raise ConfigError(
                f"{path.stem}: parameter {name} must be {type_name} "
                f"(default {declared[name].get('default')}), got {value!r}{hint}"
            )


def check_reserved(parameters: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` when ``parameters`` set one of :data:`RUNNER_PARAMETERS`."""
    reserved = sorted(set(parameters) & set(RUNNER_PARAMETERS))
    if reserved:
        raise ConfigError(f"{', '.join(reserved)} is set by the runner (the run folder); remove it from the parameters")


def split_parameters(notebooks: Iterable[str | Path], parameters: Mapping[str, Any]) -> dict[Path, dict[str, Any]]:
    """Each notebook's share of a flat parameter mapping; a key no notebook declares is an error."""
    paths = [notebook_path(nb) for nb in notebooks]
    declared = {path: declared_parameters(path) for path in paths}
    check_reserved(parameters)
    everything = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(parameters) - everything)
    if unknown:
        raise ConfigError(
            f"no notebook declares the parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {', '.join(sorted(everything - set(RUNNER_PARAMETERS)))}"
        )
    shares = {}
    for path in paths:
        share = {k: v for k, v in parameters.items() if k in declared[path]}
        check_parameters(path, share)
        shares[path] = share
    return shares


def gather(params_file: str | Path | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters file's mapping (:func:`kit.params.load`) with ``overrides`` on top."""
    return {**kit_params.load(params_file), **(overrides or {})}
