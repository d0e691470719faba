"""The worker: loads a tunasync worker config, runs jobs, records their events, obeys commands.

The names below are loaded on first use, so that importing one module of the package (a wire
type, the config loader) does not import the whole worker.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirrorbus.worker.config import load_worker_config
    from mirrorbus.worker.service import Worker

__all__ = ["Worker", "load_worker_config"]

_WHERE = {"Worker": "mirrorbus.worker.service", "load_worker_config": "mirrorbus.worker.config"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
