"""The worker: loads a tunasync worker config, runs jobs, records their events, obeys commands.

The names below are loaded on first use, so that importing one module of the package (a wire
type) does not import the whole worker.  Its config file is read by :mod:`mirrorbus.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.worker.service import Worker

__all__ = ["Worker"]

_WHERE = {"Worker": "mirrorbus.worker.service"}

__getattr__ = lazy(__name__, _WHERE)
