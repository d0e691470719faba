"""Commands for old workers: from the command stream to the URL each one registered.

``mirrorbus ctl start -w OLD JOB`` (or ``tunasynctl`` through ``POST /cmd``) appends a command
like for any worker.  The gateway's own consumer sees every command; those for a worker it
speaks for are POSTed to that worker as tunasync's ``WorkerCmd`` (HTTPS verified with the
configured CA when the URL is https), and the worker's reply becomes the command's answer
event.  Unlike tunasync's manager, which answered 200 whatever the worker did, the answer says
what happened:

* 200 → accepted; for ``stop`` and ``disable`` the job is recorded paused / disabled, since
  the old worker drops its own report of that (tunasync's manager wrote it itself);
* 404 / 406 → rejected with the worker's message (unknown job, invalid command), except that
  an old worker answers a ``reload`` (which it does carry out) with 404;
* any other status, a refused connection or no reply within :data:`POST_TIMEOUT` → rejected
  with the reason: never a hang.

``set-size`` is tunasync's manager's own business (the worker is not told), so it is recorded
here without a POST.  A command past its expiry is answered "expired", as a worker would.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import anyio
import msgspec
from anyio.abc import TaskStatus

from mirrorbus.bus import (
    REPLAYED,
    Bus,
    ConsumerSpec,
    Message,
    PullConsumer,
    make_consumer,
    replayed,
)
from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.errors import BusError, CodecError, ConfigError, InvalidName, MirrorbusError
from mirrorbus.events import (
    Command,
    CommandAnswered,
    Event,
    JobDisabled,
    JobPaused,
    JobState,
    SizeSet,
    WorkerAnswered,
    decode_command,
)
from mirrorbus.gateway.fleet import Fleet, OldWorker
from mirrorbus.gateway.wire import worker_cmd

log = logging.getLogger(__name__)

POST_TIMEOUT = 4.0
"""Seconds an old worker has to answer a command (tunasync's clients wait 5 s; the answer
must be back before ``tunasynctl`` gives up on ``/cmd``)."""


def client_tls(ca_cert: Path | None) -> ssl.SSLContext:
    """What verifies an old worker's HTTPS: the configured CA, or the system's."""
    try:
        return ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load {ca_cert}: {exc}", key="tunasync_api.ca_cert") from None


class Relay:
    def __init__(
        self,
        fleet: Fleet,
        *,
        ca_cert: Path | None = None,
        clock: Clock | None = None,
        post_timeout: float = POST_TIMEOUT,
        maker: Bus | None = None,
    ) -> None:
        self.fleet = fleet
        self.bus = fleet.bus
        self.maker = maker or fleet.bus
        """The connection that makes the command consumer: the manager's beside which the
        gateway runs (only managers may make consumers: a consumer's maker chooses where the
        server delivers); the gateway's own only pulls from it and acknowledges."""
        self.clock = clock or SystemClock()
        self.tls = client_tls(ca_cert)
        self.post_timeout = post_timeout

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        s = self.bus.subjects
        # (its consumer deleted, or lost with a server: made again at the next bind)
        sub = PullConsumer(
            self.bus,
            s.cmd_stream,
            s.gateway_consumer,
            batch=32,
            timeout=5,
            what="the commands",
            make=self._make,
            rebind_on_error=True,
        )
        await sub.bind()
        timeout = aiohttp.ClientTimeout(total=self.post_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                anyio.create_task_group() as tg,
            ):
                task_status.started()
                while True:
                    # (the consumer's own size, as the workers': one while idle, the whole
                    # batch while a backlog waits)
                    for msg in await sub.fetch():
                        await msg.ack()  # at most once, as a worker: never a start twice
                        tg.start_soon(self._handle, http, msg)
        finally:
            with anyio.CancelScope(shield=True):
                await sub.close()

    async def _make(self) -> None:
        """The gateway's durable command consumer, made if missing (then from the next
        command on: older ones are the workers' past)."""
        s = self.bus.subjects
        spec = ConsumerSpec(
            stream=s.cmd_stream,
            name=s.gateway_consumer,
            filter_subject=s.all_commands,
            start="new",
            ack="explicit",
            ack_wait=30,
            max_ack_pending=256,
        )
        try:
            # (one that exists with another start policy is kept: its position with it)
            await make_consumer(self.maker, spec, keep_existing=True)
        except BusError as exc:
            raise BusError(f"cannot consume commands: {exc}") from None

    async def _handle(self, http: aiohttp.ClientSession, msg: Message) -> None:
        if replayed(msg.headers, direct=False):
            log.warning("dropping the message on %s: it is %s", msg.subject, REPLAYED)
            return
        try:
            cmd = decode_command(msg.data)
            _, worker, job = self.bus.subjects.names_in(msg.subject)
        except (CodecError, InvalidName):
            return
        if (worker, job or "") != (cmd.worker, cmd.job or ""):
            log.warning(
                "command for %s/%s arrived on %s; ignored", cmd.worker, cmd.job, msg.subject
            )
            return
        try:
            old = await self.fleet.old_worker(cmd.worker)
        except MirrorbusError as exc:
            log.warning("command %s for %s not forwarded: %s", cmd.verb, cmd.worker, exc)
            return
        if old is None:
            return  # a mirrorbus worker's (or nobody's): not ours to answer
        outcome = await self.carry_out(http, old, cmd)
        log.info(
            "command %s %s/%s for tunasync worker: %s: %s",
            cmd.verb,
            cmd.worker,
            cmd.job or "-",
            "accepted" if outcome.accepted else "rejected",
            outcome.message,
        )
        async with self.fleet.lock:
            jobs = await self.fleet.jobs(cmd.worker)
            try:
                await self.fleet.emit(cmd.worker, self._record(cmd, outcome, jobs))
            except BusError as exc:
                log.warning(
                    "answer to %s %s/%s not recorded: %s", cmd.verb, cmd.worker, cmd.job, exc
                )

    def _record(self, cmd: Command, outcome: Outcome, jobs: dict[str, JobState]) -> list[Event]:
        """The events of a command's outcome: its effect on the job, then the answer."""
        at = self.clock.now()
        state = jobs.get(cmd.job) if cmd.job else None
        events: list[Event] = []
        accepted, message = outcome.accepted, outcome.message
        if state is not None and accepted:
            meta = {"id": new_id(), "at": at, "worker": cmd.worker, "job": cmd.job}
            if outcome.status == "paused" and state.status != "disabled":
                # (a tunasync worker keeps a disabled job disabled on stop)
                events.append(JobPaused(**meta, cmd_id=cmd.id))  # type: ignore[arg-type]
            elif outcome.status == "disabled":
                events.append(JobDisabled(**meta, cmd_id=cmd.id))  # type: ignore[arg-type]
            elif outcome.size:
                events.append(SizeSet(**meta, size=outcome.size, cmd_id=cmd.id))  # type: ignore[arg-type]
        elif cmd.verb == "set-size" and accepted:
            accepted, message = False, f"unknown job {cmd.job!r} on worker {cmd.worker}"
        common = {
            "id": new_id(),
            "at": at,
            "worker": cmd.worker,
            "cmd_id": cmd.id,
            "verb": cmd.verb,
            "accepted": accepted,
            "message": message,
            "issuer": cmd.issuer,
        }
        if state is not None:
            events.append(CommandAnswered(**common, job=cmd.job))  # type: ignore[arg-type]
        else:
            events.append(WorkerAnswered(**common, job=cmd.job))  # type: ignore[arg-type]
        return events

    async def carry_out(self, http: aiohttp.ClientSession, old: OldWorker, cmd: Command) -> Outcome:
        """POST the command to the old worker and read its reply (never raises)."""
        if self.clock.now() > cmd.expires_at:
            return Outcome(False, f"expired: valid until {cmd.expires_at:%H:%M:%S}Z; not sent")
        if cmd.verb == "set-size":
            size = cmd.size.strip()
            if not size:
                return Outcome(False, "no size given")
            return Outcome(True, f"size set to {size}", size=size)
        try:
            async with http.post(
                old.url,
                data=worker_cmd(cmd),
                headers={"Content-Type": "application/json; charset=utf-8"},
                ssl=self.tls if old.url.startswith("https:") else False,
            ) as reply:
                status = reply.status
                text = (await reply.read()).decode(errors="replace")
        except TimeoutError:
            return Outcome(False, f"no reply from {old.url} within {self.post_timeout:g}s")
        except aiohttp.ClientError as exc:
            return Outcome(False, f"cannot reach {old.url}: {exc}")
        said = _reply_message(text)
        if status == 200:
            if cmd.verb == "stop":
                return Outcome(True, f"{said}: paused", status="paused")
            if cmd.verb == "disable":
                return Outcome(True, f"{said}: disabled", status="disabled")
            return Outcome(True, said)
        if status == 404 and cmd.verb == "reload":
            return Outcome(True, "reload sent (the tunasync worker re-reads its config)")
        if status in (404, 406):
            return Outcome(False, said)
        return Outcome(False, f"{old.url} answered HTTP {status}: {said[:200]}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of a command: the answer, and what it changes of the job."""

    accepted: bool
    message: str
    status: Literal["paused", "disabled"] | None = None
    size: str = ""


class _Reply(msgspec.Struct):
    msg: str = ""


def _reply_message(text: str) -> str:
    """The ``msg`` of a tunasync worker's JSON reply, else the text itself."""
    try:
        return msgspec.json.decode(text, type=_Reply).msg or text.strip()
    except msgspec.DecodeError:
        return text.strip()
