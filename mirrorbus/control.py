"""The control client: queries to the manager and commands to workers (what ``ctl`` uses).

A command is appended to the command stream (acknowledged, de-duplicated by its id) and the
client waits for the worker's answer event on the worker's subjects, which it subscribes to
*before* sending, so a fast answer is never missed.  The command carries an expiry: a worker
that only gets it later answers "expired" instead of acting.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import msgspec
from cryptography import x509
from nats.aio.msg import Msg

from mirrorbus.bus import Bus
from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.errors import BusError, CodecError, CommandRejected, NoAnswer, UnknownTarget
from mirrorbus.events import (
    AdminEvent,
    Command,
    CommandAnswered,
    DisabledFlushed,
    JobState,
    Verb,
    WorkerAnswered,
    WorkerForgotten,
    check_name,
    decode_event,
    encode,
)
from mirrorbus.manager.api import (
    HistoryQuery,
    JobsQuery,
    PingInfo,
    Reply,
    Target,
    TargetQuery,
)
from mirrorbus.worker.logserve import LogChunk, LogRequest
from projections.status_view import RunRow, WorkerRow

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


def certificate_identity(path: str) -> str:
    """The subject of our client certificate, recorded as the issuer of commands."""
    try:
        with open(path, "rb") as fh:
            return x509.load_pem_x509_certificate(fh.read()).subject.rfc4514_string()
    except (OSError, ValueError):
        return ""


class Control:
    def __init__(self, bus: Bus, clock: Clock | None = None) -> None:
        self.bus = bus
        self.clock = clock or SystemClock()
        self.issuer = certificate_identity(str(bus.settings.cert))

    # -- queries -------------------------------------------------------------------------
    async def _query(self, name: str, payload: Any, kind: type[T], timeout: float) -> T:
        data = await self.bus.request(
            self.bus.subjects.api(name), _encoder.encode(payload), timeout=timeout
        )
        try:
            reply = msgspec.json.decode(data, type=Reply[kind])  # type: ignore[valid-type]
        except msgspec.DecodeError as exc:
            raise BusError(f"unreadable answer to {name}: {exc}") from None
        if not reply.ok or reply.data is None:
            raise BusError(f"the manager refused {name}: {reply.error}")
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
        """A piece of a job's latest log, read by its worker (see ``worker.logserve``)."""
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
    ) -> Answer:
        """Send ``verb`` for ``worker``/``job`` (``job`` None: to the worker itself, as
        ``reload``) and return the worker's answer.

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
        )
        s = self.bus.subjects
        send, receive = anyio.create_memory_object_stream[Answer](8)

        async def on_event(msg: Msg) -> None:
            try:
                ev = decode_event(msg.data)
            except CodecError:
                return
            if isinstance(ev, CommandAnswered | WorkerAnswered) and ev.cmd_id == cmd.id:
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

        subjects = [s.worker_events(worker)]
        if job is not None:
            subjects.append(s.job_events(worker, job))
        subs = [await self.bus.nc.subscribe(subject, cb=on_event) for subject in subjects]
        target = s.job_command(worker, job) if job is not None else s.worker_command(worker)
        try:
            # No flush needed before the append: the server handles this connection's SUBs
            # before its PUB, and the answer can only follow the stored command.
            await self.bus.append(target, encode(cmd), cmd.id)
            with anyio.move_on_after(timeout):
                answer = await receive.receive()
                if not answer.accepted:
                    raise CommandRejected(f"rejected: {answer.message}")
                return answer
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


async def _admin(control: Control, event: AdminEvent) -> int:
    bus = control.bus
    return await bus.append(bus.subjects.admin_events, encode(event), event.id)


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
