"""The scripts in ``benchmarks/`` name only what the kit has.

They run on GPU hosts, which the test suite never reaches, so a kit function renamed or
moved broke them silently (``load.default_prompts`` after it moved to ``kit.perf.prompts``
stopped vLLM's baseline run on the H200). Every ``from kit... import name`` and every
``module.attribute`` read on an imported kit module is checked here, statically.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        return False
    return True


def _kit_references(tree: ast.Module) -> list[tuple[str, str, int]]:
    """Every ``(module, name, line)`` the script imports from a kit module or reads from one it imported."""
    modules: dict[str, str] = {}
    wanted: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kit" and alias.asname:
                    modules[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kit":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _is_module(full):
                    modules[alias.asname or alias.name] = full
                else:
                    wanted.append((node.module, alias.name, node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            wanted.append((modules[node.value.id], node.attr, node.lineno))
    return wanted


def test_the_scan_sees_a_moved_function():
    tree = ast.parse("from kit.perf import load\nfrom kit.perf.prompts import gone\nload.default_prompts(3)\n")
    wanted = _kit_references(tree)
    missing = [(m, n) for m, n, _ in wanted if not hasattr(importlib.import_module(m), n)]
    assert missing == [("kit.perf.prompts", "gone"), ("kit.perf.load", "default_prompts")]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_names_only_what_the_kit_has(script: Path):
    wanted = _kit_references(ast.parse(script.read_text(encoding="utf-8")))
    assert wanted, f"{script.name} uses nothing of the kit?"
    missing = [f"line {line}: {module}.{name}" for module, name, line in wanted
               if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"{script.name} reads names the kit does not have: {missing}"


def _requests(endpoint: str, walls: list[float], per_turn: int, tokens: int = 100) -> list[dict]:
    """``per_turn`` requests per turn, all of a turn started together and lasting that turn's wall."""
    rows, start = [], 0.0
    for turn, wall in enumerate(walls):
        for i in range(per_turn):
            rows.append({"endpoint": endpoint, "model": endpoint, "concurrency": per_turn, "max_tokens": tokens,
                         "request": turn * per_turn + i, "start_s": start, "ttft_s": 0.01 * (turn + 1),
                         "latency_s": wall, "chunks": tokens, "responses": tokens, "output_tokens": tokens,
                         "error": ""})
        start += wall
    return rows


def test_grid_ratios_cuts_each_level_into_the_sweeps_turns():
    """Turn t holds requests n·t//parts ..; its ratio uses only that turn's wall time; one turn when asked for one."""
    import pandas as pd

    spec = importlib.util.spec_from_file_location("grid_ratios", BENCHMARKS / "grid_ratios.py")
    grid_ratios = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid_ratios)
    frame = pd.DataFrame(_requests("direct", [1.0, 2.0], 4) + _requests("pipeline", [2.0, 2.0], 4))
    row = grid_ratios.cell_rows(frame, grid_ratios.turns_by_length("100=2")).iloc[0]
    assert row["turn_ratios"] == "0.500 1.000"
    assert row["ratio"] == pytest.approx(3.0 / 4.0)  # 800 tokens in 3 s against 800 in 4 s
    assert row["errors"] == 0
    whole = grid_ratios.cell_rows(frame, {}).iloc[0]  # no turns given: one ratio for the cell
    assert whole["turn_ratios"] == f"{3.0 / 4.0:.3f}"
