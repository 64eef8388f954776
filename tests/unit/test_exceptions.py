"""kit.exceptions: one family, the tree in the docstring, one exit code for a KitError in every entry point."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit import exceptions

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_of_the_kit_lives_here_and_is_drawn():
    """No other kit module defines an exception class; each class here appears in the docstring's tree."""
    error_class = re.compile(r"^class \w+\((?:\w*Error|\w*Exception|KitError)\b", re.M)
    elsewhere = [str(p.relative_to(ROOT)) for p in (ROOT / "kit").rglob("*.py")
                 if p.name != "exceptions.py" and error_class.search(p.read_text())]
    assert elsewhere == []
    classes = [c for _, c in inspect.getmembers(exceptions, inspect.isclass) if issubclass(c, exceptions.KitError)]
    assert len(classes) == 11
    tree = exceptions.__doc__.split("::", 1)[1]
    for cls in classes:
        assert re.search(rf"\b{cls.__name__}\b", tree), cls.__name__


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "kit", "run", "09_no_such_notebook"],
    [sys.executable, "-m", "kit.container", "download"],
    [sys.executable, str(ROOT / "benchmarks" / "gpu_sweep.py"), "--out", "{tmp}/sweep"],
])
def test_entry_points_exit_with_one_code(argv, tmp_path):
    """`python -m kit`, the container entrypoint and the benchmark scripts print one `error:` line and exit EXIT_CODE."""
    env = {**os.environ, "KIT_STATE_DIR": str(tmp_path / "state"), "MODEL_ID": "not a hub id",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([a.replace("{tmp}", str(tmp_path)) for a in argv], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == exceptions.EXIT_CODE, result.stderr
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
