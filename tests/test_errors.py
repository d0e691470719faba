"""The error tree drawn in ``mirrorbus/errors.py`` is the tree its classes make.

A reader meets the drawing first: it must name every public error class of the module, no
class that does not exist, and each under its real parent, all below ``MirrorbusError``.
"""

from __future__ import annotations

import inspect
import re

from mirrorbus import errors
from mirrorbus.errors import HookError, MirrorbusError
from mirrorbus.worker.hooks import base as hooks

TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w*)(?:\s|$)")


def drawn_tree() -> dict[str, str | None]:
    """Each class the docstring draws, with the class drawn as its parent (``None``: the root)."""
    doc = errors.__doc__ or ""
    lines = doc.split("    MirrorbusError\n", 1)
    assert len(lines) == 2, "the drawing must start with '    MirrorbusError'"
    parents: dict[str, str | None] = {"MirrorbusError": None}
    path = ["MirrorbusError"]  # the classes above the current line, one per depth
    for line in lines[1].splitlines():
        if not line.strip():
            break  # the drawing ends at the first blank line
        match = TREE_LINE.match(line)
        assert match and "──" in match["indent"], f"not a line of the tree: {line!r}"
        depth = (len(match["indent"]) - 4) // 4  # "    ├── " is depth 1
        assert 1 <= depth <= len(path), f"the line skips a level: {line!r}"
        del path[depth:]
        name = match["name"]
        assert name not in parents, f"{name} is drawn twice"
        parents[name] = path[-1]
        path.append(name)
    return parents


def public_error_classes() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == errors.__name__
        and not name.startswith("_")
    }


def test_the_drawing_names_every_error_class_and_no_other() -> None:
    assert set(drawn_tree()) == set(public_error_classes())


def test_each_class_is_drawn_under_its_parent_and_all_derive_from_mirrorbus_error() -> None:
    classes = public_error_classes()
    for name, parent in drawn_tree().items():
        cls = classes[name]
        assert issubclass(cls, MirrorbusError), name
        if parent is None:
            assert cls is MirrorbusError
        else:
            assert cls.__bases__ == (classes[parent],), f"{name} is drawn under {parent}"


def test_hook_errors_are_in_the_tree_and_still_found_where_they_were() -> None:
    assert hooks.HookError is HookError
    assert issubclass(HookError, MirrorbusError)
    assert HookError("boom").exit_code == 1
