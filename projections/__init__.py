"""Read models folded from the event log.

Each projection is a fold of events into something a reader wants: the SQL status view the
manager serves (``status_view``), and tunasync's JSON shapes (``tunasync``).  They depend on
``mirrorbus.events`` only, never on NATS, so they run inside the manager or standalone.
"""

from projections.status_view import ApplyResult, RunRow, StatusView, WorkerRow
from projections.tunasync import mirror_status, web_mirror_status

__all__ = [
    "ApplyResult",
    "RunRow",
    "StatusView",
    "WorkerRow",
    "mirror_status",
    "web_mirror_status",
]
