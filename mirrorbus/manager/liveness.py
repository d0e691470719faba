"""Worker liveness from heartbeats: who is alive, whatever the log says.

Workers publish a heartbeat on core NATS every few seconds (``<prefix>.hb.<worker>``; it may
be lost, it is never stored).  The manager notes when it last heard each one, by its own
clock (no trust in worker clocks), and writes that to the view every few seconds.  The view
then shows a worker offline once its beat is older than its timeout, and its jobs keep their
last real status: liveness is kept apart from the fold of the log.
"""

from __future__ import annotations

import logging
from datetime import datetime

import anyio
import msgspec
from anyio.abc import TaskStatus
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus.bus import Bus, Message
from mirrorbus.clock import Clock, SystemClock
from mirrorbus.errors import InvalidName
from projections.status_view import StatusView

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0
"""Seconds between a worker's heartbeats."""


class Beat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A worker's heartbeat: ``{"worker": NAME, "running": N}``."""

    worker: str
    running: int = 0


_BEAT = msgspec.json.Decoder(Beat)


class Liveness:
    def __init__(
        self, bus: Bus, view: StatusView, clock: Clock | None = None, *, flush_every: float = 2.0
    ) -> None:
        self.bus = bus
        self.view = view
        self.clock = clock or SystemClock()
        self.flush_every = flush_every
        self._heard: dict[str, datetime] = {}

    def _on_beat(self, subject: str, data: bytes = b"", headers: object = None) -> None:
        """Note a beat, if it is one: a worker's own beat is a bare core message naming that
        worker.  Anything else on a heartbeat subject is not trusted: a JetStream answer or a
        service's reply sent there by whoever chose the reply subject (the server then
        publishes on a subject the requester may not publish on itself) carries headers or
        other content."""
        try:
            beat = _BEAT.decode(data)
            if headers or self.bus.subjects.heartbeat(beat.worker) != subject:
                return
        except (InvalidName, msgspec.DecodeError):
            return
        self._heard[beat.worker] = self.clock.now()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async def on_msg(msg: Message) -> None:
            self._on_beat(msg.subject, msg.data, msg.headers)

        sub = await self.bus.serve(self.bus.subjects.all_heartbeats, on_msg)
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.flush_every)
                heard, self._heard = self._heard, {}
                if heard:
                    try:
                        await anyio.to_thread.run_sync(self.view.record_heartbeats, heard)
                    except SQLAlchemyError as exc:  # the database is away; beats come again
                        log.warning("heartbeats not recorded: %s", exc)
        finally:
            with anyio.CancelScope(shield=True):
                await sub.unsubscribe()
