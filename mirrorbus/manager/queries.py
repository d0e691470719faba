"""Answer queries from the status view (request/reply on ``<prefix>.api.>``).

Every manager replica subscribes to the queries in one queue group, so each query goes to one
replica that is alive; to ``<prefix>.replicas.*`` with no queue group, which every replica
answers (a client's hedge, see ``Bus.request_hedged``); and to ``<prefix>.replica.<name>.*``
alone, so that one replica can be asked by name (its presence check, a read of its own view).
Each answer names the replica and the position of its view.  A query with a ``Min-Position``
header that this view has not reached yet waits for the projector (at most
:data:`MAX_CATCH_UP_WAIT`), meanwhile the others are answered; if the view is still behind
then, the answer says so and the client asks every replica.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus import __version__
from mirrorbus.bus import Bus, Message, answerable
from mirrorbus.clock import new_id
from mirrorbus.errors import BusError, MirrorbusError
from mirrorbus.events.wire import (
    MIN_POSITION,
    HistoryQuery,
    JobsQuery,
    PingInfo,
    Reply,
    Target,
    TargetQuery,
)
from projections.status_view import StatusView

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()

MAX_CATCH_UP_WAIT = 2.0
"""Seconds a query asking for a position this view has not reached waits for it."""
MAX_WAITING = 256
"""Queries waiting for a position at once; more are answered "behind" at once."""


@dataclass(frozen=True, slots=True)
class ReplicaIdentity:
    """Who answers: the replica's name and this process (told apart from another process
    started with the same name)."""

    name: str = ""
    instance: str = field(default_factory=new_id)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)


class PositionWatch:
    """The view's position as the projector commits batches, and a wait for a position."""

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self._moved = anyio.Event()

    def advance(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._moved.set()
            self._moved = anyio.Event()

    async def wait_for(self, position: int, timeout: float) -> bool:
        """True once the view is at ``position`` or past it; False after ``timeout``."""
        with anyio.move_on_after(timeout):
            while self.position < position:
                await self._moved.wait()
        return self.position >= position


class QueryService:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        *,
        identity: ReplicaIdentity | None = None,
        watch: PositionWatch | None = None,
        join_when: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``join_when``: the queries of the queue group (and those asked of every replica)
        are taken once it returns; those asked of this replica by name at once."""
        self.bus = bus
        self.join_when = join_when
        self.view = view
        self.identity = identity or ReplicaIdentity()
        self.watch = watch
        """The projector's position; without one (a view fed elsewhere) it is read from the
        view at each query, and a query for a position not reached is answered "behind"."""
        self._prefix_len = len(bus.subjects.api("x")) - 1
        self._waiting = 0
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
                    me = self.identity
                    return Reply(
                        ok=True,
                        data=PingInfo(
                            position=self.view.position(),
                            version=__version__,
                            replica=me.name,
                            instance=me.instance,
                            host=me.host,
                            pid=me.pid,
                            started_at=me.started_at,
                            view_bytes=self.view.size_bytes(),
                        ),
                    )
            return Reply(ok=False, error=f"unknown query {query!r}")
        except msgspec.DecodeError as exc:
            return Reply(ok=False, error=f"bad {query} request: {exc}")
        except MirrorbusError as exc:
            return Reply(ok=False, error=str(exc))
        except SQLAlchemyError as exc:  # the database is away: say so, keep serving
            return Reply(ok=False, error=f"the status view cannot be read: {exc}")

    async def _position(self) -> int:
        if self.watch is not None:
            return self.watch.position
        try:
            return await anyio.to_thread.run_sync(self.view.position)
        except SQLAlchemyError:
            return 0

    def _query_name(self, subject: str) -> str:
        if subject.startswith(self.bus.subjects.prefix + ".api."):
            return subject[self._prefix_len :]
        return subject.rsplit(".", 1)[-1]  # replica.<name>.<query>, replicas.<query>

    async def _respond(self, msg: Message, query: str) -> None:
        # The position is read before the answer: everything up to it is in the answer.
        position = await self._position()
        reply = self._answer_from_memory(query, msg.data)
        if reply is None:
            reply = await anyio.to_thread.run_sync(self.answer, query, msg.data)
        if msg.reply:
            reply = msgspec.structs.replace(reply, replica=self.identity.name, position=position)
            data = _encoder.encode(reply)
            if not await self.bus.respond(msg, data):
                refusal: Reply[Any] = Reply(
                    ok=False,
                    error=f"the answer to {query} is too big ({len(data)} bytes): ask for "
                    "less (one worker, fewer runs)",
                    replica=self.identity.name,
                    position=position,
                )
                await self.bus.respond(msg, _encoder.encode(refusal))

    async def _behind(self, msg: Message, wanted: int) -> None:
        position = await self._position()
        if msg.reply:
            me = self.identity.name or "the manager"
            reply: Reply[Any] = Reply(
                ok=False,
                error=f"replica {me} is at event {position}, behind event {wanted}",
                replica=self.identity.name,
                position=position,
            )
            await self.bus.respond(msg, _encoder.encode(reply))

    async def _when_reached(self, msg: Message, query: str, wanted: int) -> None:
        """Answer once the view reaches ``wanted``, or say it is behind."""
        try:
            # A position past the log's end (a client's note from an older log, say) is never
            # reached: answer at once rather than make the client wait.
            past_end = await self.bus.last_sequence() < wanted
        except BusError:
            past_end = False
        if past_end or (
            self.watch is not None and await self.watch.wait_for(wanted, MAX_CATCH_UP_WAIT)
        ):
            await self._respond(msg, query)
        else:
            await self._behind(msg, wanted)

    async def _handle(self, msg: Message, tg: TaskGroup) -> None:
        if not answerable(msg.reply):
            return  # a reply subject that is not an inbox (see ``answerable``)
        query = self._query_name(msg.subject)
        wanted = _min_position(msg)
        if wanted and wanted > await self._position():
            if self._waiting >= MAX_WAITING:
                await self._behind(msg, wanted)
                return
            self._waiting += 1

            async def later() -> None:
                try:
                    await self._when_reached(msg, query, wanted)
                finally:
                    self._waiting -= 1

            tg.start_soon(later)
            return
        await self._respond(msg, query)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[Message](256)

        async def on_msg(msg: Message) -> None:
            await send.send(msg)

        s = self.bus.subjects
        subs = []
        if self.identity.name:
            subs.append(await self.bus.serve(s.replica_all_api(self.identity.name), on_msg))

        async def join() -> None:
            if self.join_when is not None:
                await self.join_when()
            subs.append(await self.bus.serve(s.all_api, on_msg, queue=s.manager_queue))
            subs.append(await self.bus.serve(s.every_replica_all_api, on_msg))

        if self.join_when is None:
            await join()
        task_status.started()
        try:
            async with receive, anyio.create_task_group() as tg:
                if self.join_when is not None:
                    tg.start_soon(join)
                async for msg in receive:
                    await self._handle(msg, tg)
        finally:
            with anyio.CancelScope(shield=True):
                for sub in subs:
                    await sub.unsubscribe()
            send.close()  # no more messages come in


def _min_position(msg: Message) -> int:
    raw = (msg.headers or {}).get(MIN_POSITION, "")
    try:
        return max(int(raw), 0) if raw else 0
    except ValueError:
        return 0
