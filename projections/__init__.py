"""Read models folded from the event log.

Each projection is a fold of events into something a reader wants: the SQL status view the
manager serves (``status_view``), and tunasync's JSON shapes (``tunasync``).  They depend on
``mirrorbus.events`` only, never on NATS, so they run inside the manager or standalone.

The names below are loaded on first use: a client that needs tunasync's JSON shapes or the
row types must not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from projections.rows import ApplyResult
    from projections.status_view import StatusView
    from projections.tunasync import mirror_status, web_mirror_status

__all__ = [
    "ApplyResult",
    "StatusView",
    "mirror_status",
    "web_mirror_status",
]

_WHERE = {
    "ApplyResult": "projections.rows",
    "StatusView": "projections.status_view",
    "mirror_status": "projections.tunasync",
    "web_mirror_status": "projections.tunasync",
}

__getattr__ = lazy(__name__, _WHERE)
