"""The kit's import graph: no circle between its modules, and the CLI on top (only ``kit/__main__.py`` imports it).

Module-level imports are walked statically (``ast``): an import inside a
function runs late and cannot close a circle at import time, but an import of
``kit.cli`` anywhere outside ``kit/__main__.py`` is refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[2] / "kit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    """kit modules imported by ``path`` (``from kit import x`` counts as ``kit.x`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if top_level_only:  # imports guarded by `if`/`try` at module level run at import time too
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    else:
        nodes = list(ast.walk(tree))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "kit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "kit":
                continue
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in KIT.rglob("*.py")}
    return {name: {m for m in _imports(path, name, top_level_only=top_level_only) if m in files and m != name}
            for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is how packages work, not a circle
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_inside_kit():
    """No chain of module-level imports leads from a kit module back to itself."""
    cycle = _cycle(_graph(top_level_only=True))
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_only_the_entry_point_imports_the_cli():
    """kit.cli sits on top: no kit module imports it (at module level or inside a function) but kit/__main__.py."""
    importers = sorted(name for name, imported in _graph(top_level_only=False).items()
                       if "kit.cli" in imported and name != "kit.__main__")
    assert importers == []


def test_notebooks_import_domain_modules_only():
    """The notebooks import the kit's library modules, never its CLI."""
    import json
    import re

    for path in sorted((KIT.parent / "notebooks").glob("*.ipynb")):
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert not re.search(r"\bkit\.cli\b|from kit import [^\n]*\bcli\b", source), path.name


def test_the_walker_finds_a_circle():
    """The circle finder reports a two-module circle and ignores a package importing its submodule."""
    assert _cycle({"kit.a": {"kit.b"}, "kit.b": {"kit.a"}}) == ["kit.a", "kit.b", "kit.a"]
    assert _cycle({"kit.p": {"kit.p.x"}, "kit.p.x": {"kit.p"}}) is None
