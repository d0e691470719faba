"""The workers' command consumers, made by the manager.

A consumer's maker chooses where the server delivers its messages (a push consumer's
``deliver_subject``), and no permission can restrict that choice; so no client makes
consumers, and the manager makes each worker's durable command consumer once the view knows
the worker (from its first event).  The worker only pulls from it and acknowledges.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus.bus import Bus, ensure_command_consumer
from mirrorbus.errors import BusError, ProjectionError
from projections.changes import Changes
from projections.status_view import StatusView

log = logging.getLogger(__name__)


class CommandConsumers:
    def __init__(self, bus: Bus, view: StatusView, changes: Changes) -> None:
        self.bus = bus
        self.view = view
        self.changes = changes
        self.made: set[str] = set()

    async def ensure(self) -> None:
        """Make the command consumer of every worker the view knows and that has none yet."""
        try:
            workers = await anyio.to_thread.run_sync(self.view.workers)
        except (SQLAlchemyError, ProjectionError) as exc:
            # The database is away (restarting): the projector waits for it too, and its
            # next applied batch asks here again.  The manager must not stop for it.
            log.warning("cannot read the workers from the view (%s); asking again later", exc)
            return
        for name in sorted({w.name for w in workers} - self.made):
            try:
                await ensure_command_consumer(self.bus, name)
            except BusError as exc:
                log.warning("%s (asking again at the next change)", exc)
                continue
            self.made.add(name)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        seen = self.changes.version
        await self.ensure()
        task_status.started()
        while True:
            seen = await self.changes.wait(seen)
            await self.ensure()
