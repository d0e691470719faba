"""The worker's outbox: every event it emits, appended to the bus in order, kept until stored.

One concept in two parts:

- :class:`~.outbox.Outbox` (:mod:`.outbox`) queues the events in memory and appends them
  (pipelined, retried with the same message id until acknowledged), folds the acknowledged
  ones, and writes the snapshots;
- :class:`~.journal.Journal` (:mod:`.journal`) is the outbox's file on disk (``[bus] outbox``):
  each queued event is written there first and removed once acknowledged, so the events of a
  worker that stops while NATS is away survive it.  :func:`~.journal.replay` appends them at the
  next start: "replay" in the worker means only this resend of what was not acknowledged
  (rebuilding job states from the log is :mod:`mirrorbus.worker.restore`).

The names below are loaded on first use (see :mod:`mirrorbus.lazy`).

May import :mod:`mirrorbus.bus`, :mod:`mirrorbus.events`, :mod:`mirrorbus.clock`,
:mod:`mirrorbus.errors` and :mod:`mirrorbus.dirs`; never the rest of the worker, the manager or
the projections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.worker.outbox.journal import Journal, replay
    from mirrorbus.worker.outbox.outbox import Outbox

__all__ = ["Journal", "Outbox", "replay"]

_WHERE = {
    "Journal": "mirrorbus.worker.outbox.journal",
    "Outbox": "mirrorbus.worker.outbox.outbox",
    "replay": "mirrorbus.worker.outbox.journal",
}

__getattr__ = lazy(__name__, _WHERE)
