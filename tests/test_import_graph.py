"""The package structure as a test: no two parts of foundation/ import each other, the service is a leaf.

Every `import foundation.x...` / `from foundation.x... import` in foundation/ counts, lazy imports inside
functions and `TYPE_CHECKING` imports included, so a circle cannot hide behind a deferred import. A part is
a top-level package (`foundation/data/`) or a top-level module (`foundation/training.py`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "foundation"


def _part(module: str) -> str | None:
    """`foundation.data.schema` -> `data`; None for `foundation` itself."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[0] == "foundation" else None


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """part -> parts it imports (self-imports left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        source = _part(".".join(relative.parts))
        if source is None or source == "__init__":
            continue
        edges = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                target = _part(name)
                if target is not None and target != source:
                    edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_parts_of_the_package_import_each_other():
    circles = cycles(import_graph())
    assert not circles, f"import circles between parts of foundation/: {circles}"


def test_the_cycle_check_sees_a_new_circle(tmp_path):
    package = tmp_path / "foundation"
    for name, text in {"a/__init__.py": "", "a/x.py": "def f():\n    from foundation.b import y\n",
                       "b/__init__.py": "", "b/y.py": "from foundation.a.x import f\n"}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert cycles(import_graph(package)) == [["a", "b"]]


def test_only_the_benchmark_suite_imports_the_service():
    importers = sorted(part for part, targets in import_graph().items() if "serving" in targets)
    assert importers in ([], ["benchmark"]), f"foundation.serving is imported by {importers}: it must be a leaf"


def test_no_entry_points_inside_the_package():
    mains = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "__name__ == \"__main__\"" in p.read_text()]
    assert not mains, f"entry points belong in scripts/, found `if __name__ == \"__main__\"` in {mains}"
