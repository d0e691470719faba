"""Which part of the project may import which: the rules the package docstrings state,
checked from the source.

Every import counts here, also one inside a function (it is a dependency all the same, only a
later one); only those under ``if TYPE_CHECKING:`` do not (they name types for the checker and
never run).  A part is a top-level module or package of ``mirrorbus`` (``mirrorbus.bus``,
``mirrorbus.control``, ...) or ``projections``.  The direction is the architecture: the events
know nothing of NATS or SQL, the bus is the only part that speaks NATS, the client (the ctl's
library) knows neither the services nor the view, the worker knows nothing of the manager or
the view, and the services meet only through the bus.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from test_layout import _is_type_checking, _resolve, imported_names, module_files

STACKS = ("nats", "sqlalchemy", "aiohttp")
"""Third-party stacks whose place is part of the architecture."""

FORBIDDEN: dict[str, set[str]] = {
    "mirrorbus.events": {
        "mirrorbus.bus", "mirrorbus.config", "mirrorbus.control", "mirrorbus.host",
        "mirrorbus.worker", "mirrorbus.manager", "mirrorbus.gateway", "mirrorbus.cli",
        "projections", "nats", "sqlalchemy", "aiohttp",
    },
    "mirrorbus.config": {
        "mirrorbus.bus", "mirrorbus.control", "mirrorbus.worker", "mirrorbus.manager",
        "mirrorbus.gateway", "mirrorbus.cli", "projections", "nats", "sqlalchemy", "aiohttp",
    },
    "mirrorbus.bus": {
        "mirrorbus.control", "mirrorbus.host", "mirrorbus.worker", "mirrorbus.manager",
        "mirrorbus.gateway", "mirrorbus.cli", "projections", "sqlalchemy",
    },
    "mirrorbus.control": {
        "mirrorbus.worker", "mirrorbus.manager", "mirrorbus.gateway", "mirrorbus.cli",
        "projections", "nats", "sqlalchemy", "aiohttp",
    },
    "mirrorbus.worker": {
        "mirrorbus.control", "mirrorbus.manager", "mirrorbus.gateway", "mirrorbus.cli",
        "mirrorbus.host", "projections", "nats", "sqlalchemy", "aiohttp",
    },
    "mirrorbus.manager": {
        "mirrorbus.control", "mirrorbus.worker", "mirrorbus.gateway", "mirrorbus.cli",
        "mirrorbus.host", "nats",
    },
    "mirrorbus.gateway": {
        "mirrorbus.worker", "mirrorbus.manager", "mirrorbus.cli", "mirrorbus.host", "nats",
    },
    "mirrorbus.host": {
        "mirrorbus.bus", "mirrorbus.control", "mirrorbus.worker", "mirrorbus.manager",
        "mirrorbus.gateway", "mirrorbus.cli", "projections", "nats", "sqlalchemy", "aiohttp",
    },
    "projections": {
        "mirrorbus.bus", "mirrorbus.control", "mirrorbus.host", "mirrorbus.worker",
        "mirrorbus.manager", "mirrorbus.gateway", "mirrorbus.cli", "nats", "aiohttp",
    },
    "mirrorbus.cli": {"nats"},
}  # fmt: skip
"""Part -> what it must not import (a part of the project, or a stack)."""


def _all_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``body``, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _all_imports(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _all_imports([child])
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from _all_imports(child.body)


def part(module: str) -> str:
    """``mirrorbus.worker.hooks.base`` -> ``mirrorbus.worker``; a stack -> its top name."""
    pieces = module.split(".")
    if pieces[0] == "mirrorbus" and len(pieces) > 1:
        return ".".join(pieces[:2])
    return pieces[0]


def imports_by_module() -> dict[str, set[str]]:
    """Module -> what it imports: project modules by name, anything else by its top name."""
    modules = module_files()
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _all_imports(ast.parse(path.read_text(), str(path)).body):
            for target in imported_names(node, package):
                targets.add(_resolve(target, modules) or target.split(".")[0])
        found[name] = targets
    return found


def test_the_reader_counts_late_imports_but_not_type_checking_ones() -> None:
    sample = (
        "import a\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    import late\n    try:\n        import deeper\n"
        "    except ImportError:\n        import fallback\n"
        "class K:\n    def m(self):\n        from x.y import z\n"
    )
    names = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in _all_imports(ast.parse(sample).body)
        for alias in node.names
    }
    assert names == {"a", "late", "deeper", "fallback", "x.y.z"}
    assert part("mirrorbus.worker.hooks.base") == "mirrorbus.worker"
    assert part("sqlalchemy.orm") == "sqlalchemy"


def test_each_part_imports_only_what_its_rules_allow() -> None:
    broken = [
        f"{module} imports {target}"
        for module, targets in sorted(imports_by_module().items())
        for target in sorted(targets)
        if part(target) in FORBIDDEN.get(part(module), set())
    ]
    assert not broken, "imports against the layering rules:\n" + "\n".join(broken)
