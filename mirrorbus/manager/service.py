"""The manager: projects the event log into the status view and answers queries from it.

It is not a relay: workers never wait for it, and while it is down nothing is lost; on start
it catches up from the position stored in the view.  With ``outputs`` it also serves the
read API, metrics and status page over HTTP and writes the status files, all from the view.

Any number of managers run against one log as *replicas*: each has a name, its own durable
consumer (``Subjects.manager_consumer(name)``) and its own view, and answers queries in one
queue group with the others (see :mod:`mirrorbus.manager.replica` for why a name is never
held twice).  Every replica makes the workers' command consumers it finds missing (making one
that exists is a no-op): no other role may make a consumer.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import anyio
from anyio.abc import TaskStatus

from mirrorbus.bus import Bus, drop_legacy_consumers
from mirrorbus.config.bus import StreamSettings
from mirrorbus.config.names import default_name
from mirrorbus.config.outputs import OutputSettings
from mirrorbus.errors import BusError
from mirrorbus.events.subjects import check_token
from mirrorbus.manager.consumers import CommandConsumers
from mirrorbus.manager.liveness import Liveness
from mirrorbus.manager.outputs import run_outputs
from mirrorbus.manager.projector import Projector
from mirrorbus.manager.queries import PositionWatch, QueryService, ReplicaIdentity
from mirrorbus.manager.replica import check_alone, claim, fence, others_answer
from projections.changes import Changes
from projections.status_view import ApplyResult, StatusView

log = logging.getLogger(__name__)

CATCH_UP_LIMIT = 120.0
"""Seconds a replica that is behind leaves the queries to the others (see ``_useful``)."""


class Manager:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        *,
        name: str | None = None,
        streams: StreamSettings | None = None,
        batch: int = 512,
        outputs: OutputSettings | None = None,
    ) -> None:
        self.bus = bus
        self.view = view
        self.streams = streams or StreamSettings()
        self.name = check_token(name if name is not None else default_name(), "manager name")
        outputs = outputs or OutputSettings()
        # Its HTTP answers name it too (behind a load balancer: which replica answered).
        self.outputs = replace(outputs, http=replace(outputs.http, replica=self.name))
        self.identity = ReplicaIdentity(name=self.name)
        self.changes = Changes()
        self.watch = PositionWatch()
        self.projector = Projector(
            bus,
            view,
            batch=batch,
            consumer=bus.subjects.manager_consumer(self.name),
            on_applied=self._applied,
        )
        self.queries = QueryService(
            bus, view, identity=self.identity, watch=self.watch, join_when=self._useful
        )
        self.liveness = Liveness(bus, view)
        self.consumers = CommandConsumers(bus, view, self.changes)

    async def _useful(self) -> None:
        """Return when this replica should take its share of the queries: at once if its
        view is at the log's end (as it was at start) or no other replica answers; else,
        while the others answer, once it has caught up (at most :data:`CATCH_UP_LIMIT`), so
        that a replica back after a long absence does not answer from an old view."""
        try:
            end = await self.bus.last_sequence()
        except BusError:
            return
        if self.watch.position >= end or not await others_answer(self.bus):
            return
        log.info("catching up to event %d before taking queries (others answer them)", end)
        if await self.watch.wait_for(end, CATCH_UP_LIMIT):
            log.info("caught up to event %d: taking queries", end)
        else:
            log.warning("not at event %d after %.0fs; taking queries anyway", end, CATCH_UP_LIMIT)

    def _applied(self, result: ApplyResult) -> None:
        self.changes.applied(result)
        self.watch.advance(result.position)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.bus.ensure_streams_when_ready(self.streams)
        # Before the consumer is touched: the projector re-creates it from this view.
        await claim(self.bus, self.name)
        await anyio.to_thread.run_sync(self.view.claim, self.name)
        await drop_legacy_consumers(self.bus, self.name)
        async with anyio.create_task_group() as tg:
            await tg.start(self.projector.run)
            self.watch.advance(self.projector.position)
            if self.outputs.active:
                # Before the queries: once a replica answers (``up`` waits for that), its
                # HTTP API answers too.
                await tg.start(
                    run_outputs,
                    self.view,
                    self.changes,
                    self.outputs,
                    self.bus.last_sequence,
                    self.bus.stream_usage,
                )
            await tg.start(self.queries.run)
            await check_alone(self.bus, self.identity)
            tg.start_soon(fence, self.bus, self.name, lambda: self.projector.created)
            await tg.start(self.liveness.run)
            await tg.start(self.consumers.run)
            log.info(
                "manager ready (replica %s, view %s, position %d)",
                self.name,
                self.view.url,
                self.projector.position,
            )
            task_status.started()
