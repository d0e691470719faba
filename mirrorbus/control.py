"""The control client: queries to the manager and commands to workers (what ``ctl`` uses).

A command is appended to the command stream (acknowledged, de-duplicated by its id) and the
client waits for the worker's answer event on the worker's subjects, which it subscribes to
*before* sending, so a fast answer is never missed.  The command carries an expiry: a worker
that only gets it later answers "expired" instead of acting.

Queries go to whichever manager replica is alive (hedged: see ``Bus.request_hedged``).  A
command's answer says at which event of the log it (and, for a start, the run it began) is
stored; a client that then asks with that ``min_position`` is answered only by a replica whose
view has it: it reads its own write on any replica.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import msgspec

from mirrorbus.bus import Bus, Message, certificate_identity, certificate_role
from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.errors import (
    BusError,
    CodecError,
    CommandRejected,
    NoAnswer,
    PermissionDenied,
    UnknownTarget,
)
from mirrorbus.events import (
    AdminEvent,
    Command,
    CommandAnswered,
    CommandSent,
    DisabledFlushed,
    JobState,
    RunStarted,
    Verb,
    WorkerAnswered,
    WorkerForgotten,
    check_name,
    decode_event,
    encode,
)
from mirrorbus.events.subjects import check_token
from mirrorbus.events.wire import (
    MIN_POSITION,
    HistoryQuery,
    JobsQuery,
    LogChunk,
    LogRequest,
    PingInfo,
    Reply,
    RunRow,
    Target,
    TargetQuery,
    WorkerRow,
)

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Answer:
    verb: str
    worker: str
    job: str
    accepted: bool
    message: str
    cmd_id: str
    position: int = 0
    """The event of the log that holds the answer (or, for a start that began a run, the
    run's start): a query with this ``min_position`` sees the command's effect."""


RUN_STARTED_WAIT = 3.0
"""Seconds a start that began a run waits for the run's first event (it follows the answer)."""
STORED_WAIT = 2.0
"""Seconds to find a seen event in the stream (it reaches subscribers as it is stored)."""


class _ReplyMeta(msgspec.Struct):
    ok: bool = False
    replica: str = ""
    position: int = 0


class Control:
    def __init__(
        self,
        bus: Bus,
        clock: Clock | None = None,
        *,
        min_position: int = 0,
        replica: str | None = None,
        positions: bool = False,
    ) -> None:
        """``min_position``: answers only from a replica whose view holds that event;
        ``replica``: ask that manager replica only (by name) instead of any; ``positions``:
        find where each command's effect is stored (``Answer.position``; a direct get on
        the event stream, which the admin's certificate may do)."""
        self.bus = bus
        self.clock = clock or SystemClock()
        self.min_position = min_position
        self.positions = positions
        self.replica = None if replica is None else check_token(replica, "manager name")
        self.answered_by: tuple[str, int] | None = None
        """(replica, position) of the last query's answer."""
        self.written = 0
        """The log position of the last command's effect (0: none); see ``Answer.position``."""

    @functools.cached_property
    def issuer(self) -> str:
        """Read from our certificate when a command first needs it (a query does not)."""
        return certificate_identity(self.bus.settings.cert)

    @functools.cached_property
    def role(self) -> str | None:
        """Our certificate's role (``admin``, ``admin-alice``; None for a worker's), read
        once: a long-lived caller (the gateway) sends many commands."""
        return certificate_role(self.bus.settings.cert)

    # -- queries -------------------------------------------------------------------------
    def _usable(self, data: bytes) -> bool:
        """False for a replica's "behind the position asked for": ask another."""
        try:
            meta = msgspec.json.decode(data, type=_ReplyMeta)
        except msgspec.DecodeError:
            return True  # _query says why
        return meta.ok or meta.position >= self.min_position

    async def _query(self, name: str, payload: Any, kind: type[T], timeout: float) -> T:
        s = self.bus.subjects
        subject = s.api(name) if self.replica is None else s.replica_api(self.replica, name)
        try:
            data = await self.bus.request_hedged(
                subject,
                _encoder.encode(payload),
                hedge_subject=s.every_replica_api(name) if self.replica is None else None,
                timeout=timeout,
                headers={MIN_POSITION: str(self.min_position)} if self.min_position else None,
                usable=self._usable if self.min_position else None,
            )
        except BusError as exc:
            if self.min_position and "not usable" in str(exc):
                raise BusError(
                    f"no manager replica reached event {self.min_position} of the log within "
                    f"{timeout:g}s (--min-position 0 takes any replica)"
                ) from None
            raise
        try:
            reply = msgspec.json.decode(data, type=Reply[kind])  # type: ignore[valid-type]
        except msgspec.DecodeError as exc:
            raise BusError(f"unreadable answer to {name}: {exc}") from None
        self.answered_by = (reply.replica, reply.position)
        if not reply.ok or reply.data is None:
            who = f"manager replica {reply.replica}" if reply.replica else "the manager"
            raise BusError(f"{who} refused {name}: {reply.error}")
        return reply.data

    async def jobs(
        self, worker: str | None = None, *, include_removed: bool = False, timeout: float = 5.0
    ) -> list[JobState]:
        query = JobsQuery(worker=worker, include_removed=include_removed)
        return await self._query("jobs", query, list[JobState], timeout)

    async def workers(self, *, timeout: float = 5.0) -> list[WorkerRow]:
        return await self._query("workers", {}, list[WorkerRow], timeout)

    async def history(
        self, worker: str, job: str, limit: int = 20, *, timeout: float = 5.0
    ) -> list[RunRow]:
        query = HistoryQuery(worker=worker, job=job, limit=limit)
        return await self._query("history", query, list[RunRow], timeout)

    async def ping(self, *, timeout: float = 5.0) -> PingInfo:
        return await self._query("ping", {}, PingInfo, timeout)

    # -- logs ------------------------------------------------------------------------------
    async def log_chunk(
        self,
        worker: str,
        job: str,
        *,
        offset: int = -16384,
        max_bytes: int = 65536,
        file: str = "",
        timeout: float = 10.0,
    ) -> LogChunk:
        """A piece of a job's latest log, read by its worker (its log server answers)."""
        check_name(worker, "worker name")
        check_name(job, "job name")
        request = LogRequest(job=job, offset=offset, max_bytes=max_bytes, file=file)
        try:
            data = await self.bus.request(
                self.bus.subjects.logs(worker), _encoder.encode(request), timeout=timeout
            )
        except BusError as exc:
            if "nobody answers" in str(exc) or "no answer" in str(exc):
                raise NoAnswer(f"no answer from worker {worker}: is it running?") from None
            raise
        chunk = msgspec.json.decode(data, type=LogChunk)
        if not chunk.ok:
            raise (
                UnknownTarget(chunk.error)
                if chunk.error.startswith("unknown job")
                else CommandRejected(chunk.error)
            )
        return chunk

    # -- view maintenance (tunasync's rm-worker and flush) ------------------------------------
    async def forget_worker(self, worker: str) -> None:
        """Remove a worker's record from the view (its jobs stay, as in tunasync)."""
        check_name(worker, "worker name")
        known = [w.name for w in await self.workers()]
        if worker not in known:
            raise UnknownTarget(
                f"unknown worker {worker!r} (known workers: {', '.join(known) or 'none'})"
            )
        await _admin(
            self, WorkerForgotten(id=new_id(), at=self.clock.now(), by=self.issuer, worker=worker)
        )

    async def flush_disabled(self) -> None:
        """Remove every disabled job from the view (until it runs again)."""
        await _admin(self, DisabledFlushed(id=new_id(), at=self.clock.now(), by=self.issuer))

    # -- commands ------------------------------------------------------------------------
    async def _check_target(self, worker: str, job: str | None) -> None:
        """Refuse unknown workers and jobs when the manager can tell; say nothing if it
        cannot (an older manager, or none running): the worker itself answers then, or
        nobody does.  Flushed jobs count as known: hidden from the view, not gone from the
        worker, and a start brings them back."""
        try:
            target = await self._query("target", TargetQuery(worker=worker, job=job), Target, 3.0)
        except BusError:
            return
        if not target.worker:
            known = ", ".join(target.workers) or "none"
            raise UnknownTarget(f"unknown worker {worker!r} (known workers: {known})")
        if job is not None and not target.job:
            raise UnknownTarget(f"unknown job {job!r} on worker {worker}")

    async def _worker_row(self, worker: str) -> WorkerRow | None:
        try:
            return next((w for w in await self.workers(timeout=3.0) if w.name == worker), None)
        except BusError:
            return None

    async def command(
        self,
        verb: Verb,
        worker: str,
        job: str | None,
        *,
        force: bool = False,
        size: str = "",
        timeout: float = 15.0,
        ttl: float = 60.0,
        args: Sequence[str] | None = None,
    ) -> Answer:
        """Send ``verb`` for ``worker``/``job`` (``job`` None: to the worker itself, as
        ``reload``) and return the worker's answer (``args``: tunasync's, see ``Command``).

        Raises UnknownTarget, CommandRejected (with the worker's reason) or NoAnswer.
        """
        check_name(worker, "worker name")
        if job is not None:
            check_name(job, "job name")
        await self._check_target(worker, job)
        now = self.clock.now()
        cmd = Command(
            id=new_id(),
            at=now,
            verb=verb,
            worker=worker,
            job=job or "",
            force=force,
            size=size,
            expires_at=now + timedelta(seconds=ttl),
            issuer=self.issuer,
            args=None if args is None else tuple(args),
        )
        s = self.bus.subjects
        send, receive = anyio.create_memory_object_stream[Answer](8)
        events: list[tuple[str, str]] = []  # (subject, event id) of every event, in order
        answered: list[int] = []  # index in ``seen`` of the answer
        run_started = anyio.Event()

        async def on_event(msg: Message) -> None:
            try:
                ev = decode_event(msg.data)
            except CodecError:
                return
            events.append((msg.subject, ev.id))
            if isinstance(ev, CommandAnswered | WorkerAnswered) and ev.cmd_id == cmd.id:
                answered.append(len(events) - 1)
                # (an answer after the wait ended finds the stream closed: dropped)
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                    send.send_nowait(
                        Answer(
                            verb=ev.verb,
                            worker=ev.worker,
                            job=ev.job,
                            accepted=ev.accepted,
                            message=ev.message,
                            cmd_id=ev.cmd_id,
                        )
                    )
            elif isinstance(ev, RunStarted) and answered and not run_started.is_set():
                answered.append(len(events) - 1)
                run_started.set()

        subjects = [s.worker_events(worker)]
        if job is not None:
            subjects.append(s.job_events(worker, job))
        subs = [await self.bus.subscribe(subject, on_event) for subject in subjects]
        target = s.job_command(worker, job) if job is not None else s.worker_command(worker)
        token = self.role
        sent_on = s.admin_events  # the gateway's: it says who sent it
        if token == "admin" or (token or "").startswith("admin-"):
            # An operator's command carries its token, the only one the server lets it use:
            # the worker and the view record the issuer from it.
            target = s.issued_by(target, token or "admin")
            sent_on = s.operator_events(token or "admin")
        sent = CommandSent(
            id=new_id(),
            at=now,
            by=self.issuer,
            cmd_id=cmd.id,
            worker=worker,
            job=job or "",
            verb=verb,
        )
        try:
            # In the log before the command: the view records an answer only to a command
            # sent so (a worker cannot answer one nobody sent).
            deadline = anyio.current_time() + timeout
            await self._append_patiently(sent_on, encode(sent), sent.id, deadline)
            # No flush needed before the append: the server handles this connection's SUBs
            # before its PUB, and the answer can only follow the stored command.
            await self._append_patiently(target, encode(cmd), cmd.id, deadline)
            with anyio.move_on_after(timeout):
                answer = await receive.receive()
                if not answer.accepted:
                    raise CommandRejected(f"rejected: {answer.message}")
                if not self.positions:
                    return answer
                if verb in ("start", "restart") and _began_run(answer.message):
                    # The answer goes out before the run's first event: wait for that too,
                    # so that reading at this position shows the job syncing.
                    with anyio.move_on_after(RUN_STARTED_WAIT):
                        await run_started.wait()
                subject, _ = events[answered[-1]]
                self.written = await self._stored_at(subject, events, answered[-1])
                return dataclasses.replace(answer, position=self.written)
        finally:
            for sub in subs:
                await sub.unsubscribe()
            # (closed, or a long-lived caller such as the gateway leaks them per command)
            send.close()
            receive.close()
        seen = _last_seen(await self._worker_row(worker))
        raise NoAnswer(
            f"no answer from worker {worker} within {timeout:g}s ({seen}); the command stays "
            f"queued until {cmd.expires_at.astimezone():%H:%M:%S} and is dropped after that"
        )

    async def _append_patiently(
        self, subject: str, data: bytes, msg_id: str, deadline: float
    ) -> int:
        """Append, asking again (the same id: stored once) while the stream does not
        acknowledge, until ``deadline`` (``anyio.current_time()``): a cluster electing a new
        stream leader answers nothing for a few seconds, and the command's own timeout is
        what the operator gave.  A refusal by the server is not asked again."""
        while True:
            remaining = deadline - anyio.current_time()
            try:
                return await self.bus.append(
                    subject, data, msg_id, timeout=max(1.0, min(5.0, remaining))
                )
            except PermissionDenied:
                raise
            except BusError:
                if anyio.current_time() + 0.5 >= deadline:
                    raise
                await anyio.sleep(0.5)

    async def _stored_at(self, subject: str, events: list[tuple[str, str]], first: int) -> int:
        """The stream sequence of event ``events[first]`` (seen on ``subject``) or of one seen
        after it: an event reaches subscribers as the stream stores it, so the stored last
        message of the subject is asked until it is one of them.  ``events`` grows while this
        waits (the job's next events, as a short run's end, arrive meanwhile), so it is read
        again on every try.  0 if the stream cannot tell (no position to wait for, then)."""
        s = self.bus.subjects
        with anyio.move_on_after(STORED_WAIT):
            while True:
                try:
                    raw = await self.bus.get_message(
                        s.evt_stream, last_on=subject, timeout=STORED_WAIT
                    )
                    if decode_event(raw.data).id in {i for _, i in events[first:]}:
                        return raw.seq
                except (BusError, CodecError):
                    return 0
                await anyio.sleep(0.01)
        return 0


def _began_run(message: str) -> bool:
    """Whether a worker's answer to start/restart says a run began (not queued, not
    already running): its wording in ``worker.commands``."""
    return message.startswith(("started", "killed the running sync and started"))


async def _admin(control: Control, event: AdminEvent) -> int:
    """Append an operator's view change on its own subject (``evt.-admin.<token>``, the only
    one its user may publish on): the subject, not the event's ``by``, says who made it."""
    bus = control.bus
    token = control.role
    if token is None or not (token == "admin" or token.startswith("admin-")):
        token = "admin"  # not an operator's certificate: the server refuses it anyway
    event = msgspec.structs.replace(event, by=f"CN=mirrorbus-{token}")
    subject = bus.subjects.operator_events(token)
    control.written = await bus.append(subject, encode(event), event.id)
    return control.written


def _last_seen(row: WorkerRow | None) -> str:
    if row is None:
        return "the manager did not say when it was last seen"
    if row.last_seen is None:
        return "never seen"
    state = "online" if row.online else "offline"
    return f"{state}, last seen {_ago(row.last_seen)}"


def _ago(when: datetime) -> str:
    delta = SystemClock().now() - when
    seconds = int(delta.total_seconds())
    if seconds < 90:
        return f"{seconds}s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    return f"{when.astimezone():%Y-%m-%d %H:%M}"
