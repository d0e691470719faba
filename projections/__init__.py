"""Read models folded from the event log.

Each projection is a fold of events into something a reader wants: the SQL status view the
manager serves (``status_view``), and tunasync's JSON shapes (``tunasync``).  They depend on
``mirrorbus.events`` only, never on NATS, so they run inside the manager or standalone.

The names below are loaded on first use: a client that needs tunasync's JSON shapes or the
row types must not import SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.rows import ApplyResult, RunRow, WorkerRow
    from projections.status_view import StatusView
    from projections.tunasync import mirror_status, web_mirror_status

__all__ = [
    "ApplyResult",
    "RunRow",
    "StatusView",
    "WorkerRow",
    "mirror_status",
    "web_mirror_status",
]

_WHERE = {
    "ApplyResult": "projections.rows",
    "RunRow": "projections.rows",
    "WorkerRow": "projections.rows",
    "StatusView": "projections.status_view",
    "mirror_status": "projections.tunasync",
    "web_mirror_status": "projections.tunasync",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
