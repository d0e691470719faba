"""Answer queries from the status view (request/reply on ``<prefix>.api.>``)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.msg import Msg
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus import __version__
from mirrorbus.bus import Bus
from mirrorbus.errors import MirrorbusError
from mirrorbus.manager.api import HistoryQuery, JobsQuery, PingInfo, Reply, Target, TargetQuery
from projections.status_view import StatusView

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class QueryService:
    def __init__(self, bus: Bus, view: StatusView) -> None:
        self.bus = bus
        self.view = view
        self._prefix_len = len(bus.subjects.api("x")) - 1
        self._known_jobs: set[tuple[str, str]] = set()
        """Command targets (worker, job) the view confirmed.  A job's row is never deleted
        (removed and flushed jobs stay, marked), so a confirmed job stays known and its
        check is answered here, without a database round trip: every command to a job
        asks it first.  Unknown ones are always looked up."""

    def _answer_from_memory(self, query: str, payload: bytes) -> Reply[Any] | None:
        if query != "target":
            return None
        try:
            q = msgspec.json.decode(payload, type=TargetQuery)
        except msgspec.DecodeError:
            return None  # answer() says why
        if q.job is None or (q.worker, q.job) not in self._known_jobs:
            return None
        return Reply(ok=True, data=Target(worker=True, job=True))

    def answer(self, query: str, payload: bytes) -> Reply[Any]:
        """Compute the reply to one query (synchronous; runs in a worker thread)."""
        try:
            match query:
                case "jobs":
                    q = msgspec.json.decode(payload or b"{}", type=JobsQuery)
                    return Reply(
                        ok=True, data=self.view.jobs(q.worker, include_removed=q.include_removed)
                    )
                case "workers":
                    return Reply(ok=True, data=self.view.workers())
                case "history":
                    h = msgspec.json.decode(payload, type=HistoryQuery)
                    return Reply(ok=True, data=self.view.history(h.worker, h.job, h.limit))
                case "target":
                    tq = msgspec.json.decode(payload, type=TargetQuery)
                    worker, job, names = self.view.target(tq.worker, tq.job)
                    if job and tq.job is not None:
                        self._known_jobs.add((tq.worker, tq.job))
                    return Reply(ok=True, data=Target(worker=worker, job=job, workers=names))
                case "ping":
                    return Reply(
                        ok=True, data=PingInfo(position=self.view.position(), version=__version__)
                    )
            return Reply(ok=False, error=f"unknown query {query!r}")
        except msgspec.DecodeError as exc:
            return Reply(ok=False, error=f"bad {query} request: {exc}")
        except MirrorbusError as exc:
            return Reply(ok=False, error=str(exc))
        except SQLAlchemyError as exc:  # the database is away: say so, keep serving
            return Reply(ok=False, error=f"the status view cannot be read: {exc}")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[Msg](256)

        async def on_msg(msg: Msg) -> None:
            await send.send(msg)

        sub = await self.bus.serve(self.bus.subjects.all_api, on_msg)
        task_status.started()
        try:
            async with receive:
                async for msg in receive:
                    query = msg.subject[self._prefix_len :]
                    reply = self._answer_from_memory(query, msg.data)
                    if reply is None:
                        reply = await anyio.to_thread.run_sync(self.answer, query, msg.data)
                    if msg.reply:
                        await msg.respond(_encoder.encode(reply))
        finally:
            with anyio.CancelScope(shield=True):
                await sub.unsubscribe()
            send.close()  # no more messages come in
