"""A worker's commands: consumed from its durable consumer, each answered by an event.

Semantics (docs/tunasync.md §2.10 "Command effects", with its fixes): ``start`` runs the job now
(``--force`` outside the concurrency limit; a job queued for a slot is freed by it), ``stop``
kills the running sync and pauses the job, ``disable`` kills and disables it, ``restart``
kills and runs again, ``ping`` answers and changes nothing, ``reload`` re-reads the config.
A command whose expiry passed is answered "expired" and not executed.  Commands are
acknowledged before they act (at most once): a crash never replays a start the user saw
answered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import msgspec

from mirrorbus.bus import REPLAYED, Message, PullConsumer, consumer_created, replayed
from mirrorbus.errors import BusError, CodecError, NotFound
from mirrorbus.events import (
    Command,
    CommandAnswered,
    JobDisabled,
    JobPaused,
    SizeSet,
    WorkerAnswered,
    decode_command,
)
from mirrorbus.events.schema import MAX_SIZE_TEXT

if TYPE_CHECKING:
    from mirrorbus.worker.job import Job
    from mirrorbus.worker.service import Worker

log = logging.getLogger(__name__)

FETCH_BATCH = 32
"""Commands taken at a time while more are queued."""


def _identity(issuer: str) -> str:
    """The certificate subject of the user whose token a command's subject ends with (the
    server let it publish there): what the answer records as the command's issuer."""
    return f"CN=mirrorbus-{issuer}"


class CommandHandler:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def consume(self) -> None:
        """Consume this worker's commands (its durable consumer), forever."""
        w = self.worker
        s = w.bus.subjects
        name = s.worker_consumer(w.name)
        sub = PullConsumer(
            w.bus,
            s.cmd_stream,
            name,
            batch=FETCH_BATCH,  # commands may be queued since the worker last ran
            timeout=5,
            what="this worker's commands",
            inbox_prefix=w.bus.settings.inbox_prefix or "_INBOX",
        )
        delay = 0.5
        said = False
        while True:
            # The manager makes this consumer (a worker may not make consumers: a consumer's
            # maker chooses where the server delivers); a new worker's comes once the manager
            # has seen its first event.
            try:
                await consumer_created(w.bus, s.cmd_stream, name)
                await sub.bind()
                break
            except NotFound:
                if not said:
                    log.info("waiting for the manager to make this worker's command consumer")
                    said = True
            except BusError as exc:
                log.warning("command consumer not ready (%s); retrying in %.0fs", exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5)
        try:
            async with anyio.create_task_group() as handlers:
                while True:
                    for msg in await sub.fetch():
                        # At most once: acknowledged before it acts, so a crash never replays
                        # a "start" or "restart" the user already saw answered.
                        await msg.ack()
                        handlers.start_soon(self.handle, msg)
        finally:
            with anyio.CancelScope(shield=True):
                await sub.close()

    async def handle(self, msg: Message) -> None:
        w = self.worker
        if replayed(msg.headers, direct=False):
            # Someone's direct get of a message of the log answered onto this worker's
            # command subject (a worker could so have "sent" a command it wrote into its own
            # events): not a command anyone sent.
            log.warning("dropping the message on %s: it is %s", msg.subject, REPLAYED)
            return
        try:
            cmd = decode_command(msg.data)
        except CodecError as exc:
            log.warning("dropping undecodable command on %s: %s", msg.subject, exc)
            return
        now = w.clock.now()
        if cmd.verb == "reload":
            await self._reload(msg, cmd)
            return
        job = w.jobs.get(cmd.job)
        expected = w.bus.subjects.job_command(w.name, cmd.job) if job else None
        if expected is not None and msg.subject != expected:
            issuer = w.bus.subjects.issuer_in(msg.subject, expected)
            if issuer is not None:
                expected = msg.subject
                cmd = msgspec.structs.replace(cmd, issuer=_identity(issuer))
        if cmd.worker != w.name or (expected is not None and msg.subject != expected):
            self.answer_worker(
                cmd, False, f"command for {cmd.worker}/{cmd.job} arrived on {msg.subject}; ignored"
            )
            return
        if now > cmd.expires_at:
            message = _expired(cmd)
            if job is None:
                self.answer_worker(cmd, False, message)
            else:
                self.answer(job, cmd, False, message)
            return
        if job is None:
            self.answer_worker(cmd, False, f"unknown job {cmd.job!r} on worker {w.name}")
            return
        async with job.lock:
            accepted, message = await self.execute(job, cmd)
        self.answer(job, cmd, accepted, message)

    async def _reload(self, msg: Message, cmd: Command) -> None:
        w = self.worker
        expected = w.bus.subjects.worker_command(w.name)
        issuer = w.bus.subjects.issuer_in(msg.subject, expected)
        if issuer is not None:
            expected = msg.subject
            cmd = msgspec.structs.replace(cmd, issuer=_identity(issuer))
        if cmd.worker != w.name or msg.subject != expected:
            self.answer_worker(
                cmd, False, f"reload for {cmd.worker} arrived on {msg.subject}; ignored"
            )
        elif w.clock.now() > cmd.expires_at:
            self.answer_worker(cmd, False, _expired(cmd))
        else:
            accepted, message = await w.reload()
            self.answer_worker(cmd, accepted, message)

    def answer(self, job: Job, cmd: Command, accepted: bool, message: str) -> None:
        w = self.worker
        w.emit(
            CommandAnswered(
                **w.job_meta(job),
                cmd_id=cmd.id,
                verb=cmd.verb,
                accepted=accepted,
                message=message,
                issuer=cmd.issuer,
            )
        )

    def answer_worker(self, cmd: Command, accepted: bool, message: str) -> None:
        w = self.worker
        w.emit(
            WorkerAnswered(
                **w.meta(),
                cmd_id=cmd.id,
                verb=cmd.verb,
                accepted=accepted,
                message=message,
                job=cmd.job,
                issuer=cmd.issuer,
            )
        )

    async def execute(self, job: Job, cmd: Command) -> tuple[bool, str]:
        """Carry out a job command; return (accepted, message) for the answer."""
        w = self.worker
        status = job.state.status
        match cmd.verb:
            case "start":
                if job.running and (job.started or not cmd.force):
                    return True, "already running" if job.started else "already queued"
                if job.running:  # queued for a slot: --force lets it run now
                    await w.kill(job)
                w.scheduler.unschedule(job.name)
                queued = not cmd.force and w.limiter.available_tokens < 1
                w.launch(job, force=cmd.force, reason="start")
                if queued:
                    return True, (
                        f"queued: all {w.config.concurrent} slots are busy; it starts "
                        "when one frees (start --force bypasses the limit)"
                    )
                return (
                    True,
                    "started (forced, outside the concurrency limit)" if cmd.force else "started",
                )
            case "stop":
                if status == "disabled" and not job.running:
                    return False, "job is disabled; use start or restart to enable it"
                w.scheduler.unschedule(job.name)
                killed = await w.kill(job)
                w.emit(JobPaused(**w.job_meta(job), cmd_id=cmd.id))
                return True, "stopped the running sync; paused" if killed else "paused"
            case "disable":
                w.scheduler.unschedule(job.name)
                killed = await w.kill(job)
                w.emit(JobDisabled(**w.job_meta(job), cmd_id=cmd.id))
                return True, "stopped the running sync; disabled" if killed else "disabled"
            case "restart":
                w.scheduler.unschedule(job.name)
                killed = await w.kill(job)
                w.launch(job, force=cmd.force, reason="restart")
                return True, "killed the running sync and started again" if killed else "started"
            case "set-size":
                if not cmd.size.strip():
                    return False, "no size given"
                if len(cmd.size.strip()) > MAX_SIZE_TEXT:
                    return False, (
                        f"size of {len(cmd.size.strip())} characters refused: at most "
                        f"{MAX_SIZE_TEXT} (e.g. 1.2T)"
                    )
                w.emit(SizeSet(**w.job_meta(job), size=cmd.size.strip(), cmd_id=cmd.id))
                return True, f"size set to {cmd.size.strip()}"
            case "ping":
                nxt = w.scheduler.next_time(job.name)
                when = f"next run {nxt:%Y-%m-%d %H:%M:%S}Z" if nxt else "not scheduled"
                run = "running" if job.running else status
                return True, f"pong: {run}, {when}"
        return False, f"unknown command {cmd.verb!r}"  # pragma: no cover - Verb is closed


def _expired(cmd: Command) -> str:
    return (
        f"expired: given at {cmd.at:%Y-%m-%d %H:%M:%S}Z, valid until "
        f"{cmd.expires_at:%H:%M:%S}Z; not executed"
    )
