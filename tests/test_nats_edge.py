"""nats-py is imported by ``mirrorbus/bus/`` only: the one edge where its types and errors
become mirrorbus's own (``Message``, ``BusError`` and its subclasses).

Read from the source (every ``import`` statement, at any depth, also under ``if
TYPE_CHECKING``), so it holds for code no test happens to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "mirrorbus" / "bus"


def _nats_imports(path: Path) -> list[str]:
    """``file:line module`` of each import of nats-py in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            if name == "nats" or name.startswith("nats."):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def _project_modules() -> list[Path]:
    return sorted(
        p
        for top in ("mirrorbus", "projections")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def test_no_module_outside_mirrorbus_bus_imports_nats() -> None:
    outside = [hit for p in _project_modules() if EDGE not in p.parents for hit in _nats_imports(p)]
    assert outside == []


def test_the_check_sees_the_edge_itself() -> None:
    # The bus does import nats-py: a check that found nothing anywhere would prove nothing.
    inside = [hit for p in _project_modules() if EDGE in p.parents for hit in _nats_imports(p)]
    assert any(hit.startswith("mirrorbus/bus/connection.py") for hit in inside)
