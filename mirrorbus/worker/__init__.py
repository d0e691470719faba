"""The worker: loads a tunasync worker config, runs jobs, records their events, obeys commands.

The names below are loaded on first use, so that importing one module of the package (a wire
type, the config loader) does not import the whole worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.worker.config import load_worker_config
    from mirrorbus.worker.service import Worker

__all__ = ["Worker", "load_worker_config"]

_WHERE = {"Worker": "mirrorbus.worker.service", "load_worker_config": "mirrorbus.worker.config"}

__getattr__ = lazy(__name__, _WHERE)
