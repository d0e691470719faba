"""Names a package re-exports, imported on first use (PEP 562).

A package's ``__init__`` that imports its modules makes importing any one of them import all:
a client that needs a wire type would load the manager's view or the worker.  With
``__getattr__ = lazy(__name__, {"Name": "package.module", ...})`` the names stay the
package's public surface and load only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` and returns its ``name``."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
