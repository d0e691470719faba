"""The manager: projects the event log into the status view and answers queries from it.

It is not a relay: workers never wait for it, and while it is down nothing is lost; on start
it catches up from the position stored in the view.  With ``outputs`` it also serves the
read API, metrics and status page over HTTP and writes the status files, all from the view.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus

from mirrorbus.bus import Bus, StreamSettings
from mirrorbus.manager.liveness import Liveness
from mirrorbus.manager.outputs import OutputSettings, run_outputs
from mirrorbus.manager.projector import Projector
from mirrorbus.manager.queries import QueryService
from projections.changes import Changes
from projections.status_view import StatusView

log = logging.getLogger(__name__)


class Manager:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        *,
        streams: StreamSettings | None = None,
        batch: int = 512,
        outputs: OutputSettings | None = None,
    ) -> None:
        self.bus = bus
        self.view = view
        self.streams = streams or StreamSettings()
        self.outputs = outputs or OutputSettings()
        self.changes = Changes()
        self.projector = Projector(bus, view, batch=batch, on_applied=self.changes.applied)
        self.queries = QueryService(bus, view)
        self.liveness = Liveness(bus, view)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.bus.ensure_streams(self.streams)
        async with anyio.create_task_group() as tg:
            await tg.start(self.projector.run)
            await tg.start(self.queries.run)
            await tg.start(self.liveness.run)
            if self.outputs.active:
                await tg.start(
                    run_outputs, self.view, self.changes, self.outputs, self.bus.last_sequence
                )
            log.info("manager ready (view %s, position %d)", self.view.url, self.projector.position)
            task_status.started()
