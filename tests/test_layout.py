"""The tree's shape: no import circle among the project's modules, and a docstring in every
package folder saying what it holds.

Read from the source with :mod:`ast`, nothing is imported or run, so this is fast and says
where a circle is even when importing happens to work (Python tolerates some circles, until
someone imports the modules in another order).  Only imports that run when a module is loaded
count: those at module level, also under ``if``/``try``/``with`` and in class bodies.  An
import inside a function runs later, when it is called, and one under ``if TYPE_CHECKING:``
never runs; neither makes a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("mirrorbus", "projections")


def module_files() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its ``__init__``'s)."""
    found: dict[str, Path] = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run when the module is loaded."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue  # runs when called, not when loaded
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _load_time_imports(block)
            for handler in node.handlers:
                yield from _load_time_imports(handler.body)
        elif isinstance(node, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse if hasattr(node, "orelse") else [])
        elif isinstance(node, ast.ClassDef):
            yield from _load_time_imports(node.body)  # a class body runs at load time
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _load_time_imports(case.body)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``import name`` loads last (the deepest one that exists)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at load time.

    ``import a.b.c`` and ``from a.b.c import x`` point at ``a.b.c`` (or at ``a.b.c.x`` when
    that is a module); the parent packages that Python loads on the way are not edges, since
    a package's ``__init__`` that imports its own submodules is no circle.
    """
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _load_time_imports(ast.parse(path.read_text(), str(path)).body):
            for target in imported_names(node, package):
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    return graph


def imported_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement in ``package`` asks for (relative ones made
    absolute; ``from a import x`` gives ``a.x``, which may be a module or a name in ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle, as a path that ends where it starts, for each strongly connected group of
    modules (Tarjan's algorithm, then a shortest way back within the group)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    found = []
    for group in groups:
        start = min(group)
        # Breadth-first from start's successors back to start, inside the group.
        came_from: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in came_from:
            following = []
            for node in frontier:
                for succ in sorted(graph[node] & group):
                    if succ not in came_from:
                        came_from[succ] = node
                        following.append(succ)
            frontier = following
        path = [start]
        node = came_from[start]
        while node != start:
            path.append(node)
            node = came_from[node]
        path.append(start)
        found.append(path[::-1])
    return sorted(found)


def _describe(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(path) for path in found)


SAMPLE = """
import a
from b import x
if TYPE_CHECKING:
    import hidden
else:
    import c
try:
    from d import y
except ImportError:
    import e
class K:
    import f
def later():
    import g
"""


def test_the_graph_sees_load_time_imports_only() -> None:
    """The reader itself: imports that run at load time count, those in functions and under
    ``TYPE_CHECKING`` do not; a circle is printed as a path back to its start."""
    names = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in _load_time_imports(ast.parse(SAMPLE).body)
        for alias in node.names
    }
    assert names == {"a", "b.x", "c", "d.y", "e", "f"}
    # A real one: the supervisor imports the cluster at module level, pki inside functions.
    graph = import_graph()
    assert "mirrorbus.host.cluster" in graph["mirrorbus.host.supervisor"]
    assert "mirrorbus.host.pki" not in graph["mirrorbus.host.supervisor"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    found = cycles(import_graph())
    assert not found, "import circles among the project's modules:\n" + _describe(found)


def test_every_package_folder_has_a_docstring() -> None:
    missing = []
    for top in TOPS:
        folders = [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]
        for folder in sorted(folders):
            if folder.name == "__pycache__" or not any(folder.glob("*.py")):
                continue
            init = folder / "__init__.py"
            if not init.is_file() or not ast.get_docstring(ast.parse(init.read_text())):
                missing.append(str(folder.relative_to(ROOT)))
    assert not missing, "package folders without an __init__.py docstring: " + ", ".join(missing)
