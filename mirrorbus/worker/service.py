"""The worker: runs its jobs on schedule, answers commands, and records every change as an event.

Life of a run (tunasync's, docs/tunasync.md §2.10): take a concurrency slot (unless forced) →
``RunStarted`` (pre-syncing) → for each attempt: ``AttemptStarted`` (syncing), run the provider,
``RunSucceeded`` or ``AttemptFailed`` → schedule the next run ``interval`` after the end.
A stop, disable or restart cancels the run: its process group is ended and the run is closed
with ``AttemptFailed("killed by manager")``.

Every change goes through :meth:`Worker.emit`, which folds it into the live state at once and
queues it for the acknowledged append, so the worker's state is always the fold of its events.
On start the worker restores every job from its snapshot and events (``restore.restore``):
paused and disabled jobs stay so, a job is due at its recorded next schedule, and a run cut off
by a crash is closed as failed ("interrupted") and run again.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TypedDict

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from mirrorbus import __version__
from mirrorbus.bus import Bus
from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.config.worker import MirrorConfig, WorkerConfig, load_worker_config
from mirrorbus.errors import BusError, MirrorbusError
from mirrorbus.events import (
    AttemptFailed,
    CommandAnswered,
    Event,
    JobConfigured,
    JobEvent,
    JobRemoved,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    WorkerAnswered,
    WorkerStarted,
    WorkerStopped,
    evolve,
)
from mirrorbus.worker.commands import CommandHandler
from mirrorbus.worker.hooks.attach import build_hooks
from mirrorbus.worker.hooks.base import AttemptContext
from mirrorbus.worker.job import KILLED, Job
from mirrorbus.worker.logserve import LogServer
from mirrorbus.worker.outbox.journal import Journal, replay
from mirrorbus.worker.outbox.outbox import Outbox
from mirrorbus.worker.process import end_leftovers, use_pidfd_child_watcher
from mirrorbus.worker.providers.choose import make_provider
from mirrorbus.worker.reload import diff
from mirrorbus.worker.restore import Restored, restore
from mirrorbus.worker.run import JobRun
from mirrorbus.worker.scheduler import Scheduler

log = logging.getLogger(__name__)

SHUTDOWN = "killed by worker shutdown"
INTERRUPTED = "interrupted"


class _Meta(TypedDict):
    id: str
    at: datetime
    worker: str


class _JobMeta(_Meta):
    job: str


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        bus: Bus,
        clock: Clock | None = None,
        *,
        snapshot_every: int = 200,
        flush_timeout: float = 10.0,
        rng: random.Random | None = None,
        heartbeat_interval: float = 5.0,
        journal: Journal | None = None,
        snapshot_interval: float = 3600.0,
        freeze_gc: bool = False,
    ) -> None:
        self.config = config
        self._freeze_gc = freeze_gc
        self._environment = MappingProxyType(dict(os.environ))  # what every job starts from
        self.name = config.name
        self.bus = bus
        self.clock = clock or SystemClock()
        self.jobs: dict[str, Job] = {}
        self.limiter = anyio.CapacityLimiter(max(config.concurrent, 1))
        self._host_limiters: dict[str, anyio.CapacityLimiter] = {}
        self.random = rng or random.Random()
        self.heartbeat_interval = heartbeat_interval
        self.journal = journal or Journal(None)
        self.snapshot_interval = snapshot_interval
        self.scheduler = Scheduler(self.clock, self._on_due)
        self._snapshot_every = snapshot_every
        self._flush_timeout = flush_timeout
        self._outbox: Outbox | None = None
        self._tg: TaskGroup | None = None
        self._stopping = anyio.Event()
        self.commands = CommandHandler(self)
        self._reload_lock = anyio.Lock()
        self._stop_reason = "stopped"

    # -- events --------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Fold ``event`` into the live state and queue it for the acknowledged append."""
        assert self._outbox is not None, "emit before run()"
        if isinstance(event, JobEvent):
            job = self.jobs.get(event.job)
            if job is not None:
                job.state = evolve(job.state, event)
                subject = job.subject
            else:
                subject = self.bus.subjects.job_events(self.name, event.job)
        else:
            subject = self.bus.subjects.worker_events(self.name)
        self._outbox.put(subject, event)
        _log_event(event)

    def meta(self) -> _Meta:
        return {"id": new_id(), "at": self.clock.now(), "worker": self.name}

    def job_meta(self, job: Job) -> _JobMeta:
        return {"id": new_id(), "at": self.clock.now(), "worker": self.name, "job": job.name}

    # -- life ----------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Ask :meth:`run` to end: running jobs are killed, events flushed, snapshot written."""
        self._stop_reason = reason
        self._stopping.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        use_pidfd_child_watcher()
        if kept := await replay(self.journal, self.bus):
            log.info("appended %d events kept from before the last stop", kept)
        restored = await self._restore()
        states = restored.states
        self._outbox = Outbox(
            self.bus,
            self.name,
            self.clock,
            acked_states=states,
            acked_seq=restored.seq,
            snapshot_every=self._snapshot_every,
            journal=self.journal,
        )
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._outbox.run)
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    for run_id in self._restore_jobs(states):
                        if ended := await end_leftovers(run_id):
                            log.warning(
                                "ended %d leftover process(es) of interrupted run %s", ended, run_id
                            )
                    if self._freeze_gc:
                        # The jobs and their configuration live as long as the process: the
                        # cyclic collector need not walk them again at every full collection.
                        gc.freeze()
                    self.emit(
                        WorkerStarted(
                            **self.meta(),
                            version=__version__,
                            hostname=socket.gethostname(),
                            pid=os.getpid(),
                            jobs=tuple(self.jobs),
                            concurrent=self.config.concurrent,
                        )
                    )
                    tg.start_soon(self.commands.consume)
                    tg.start_soon(self.scheduler.run)
                    tg.start_soon(self._heartbeat)
                    tg.start_soon(self._snapshot_timer)
                    await tg.start(LogServer(self).run)
                    task_status.started()
                    await self._stopping.wait()
                    tg.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shutdown()
                outer.cancel_scope.cancel()

    async def _snapshot_timer(self) -> None:
        """Write a snapshot at least every ``snapshot_interval`` if anything changed, so a quiet
        worker's restore never depends on events older than that (the log may have a maximum
        age: ``[streams] max_age_days``)."""
        assert self._outbox is not None
        while True:
            await self.clock.sleep(self.snapshot_interval)
            try:
                await self._outbox.snapshot()
            except BusError as exc:
                log.warning("periodic snapshot not written: %s", exc)

    async def _heartbeat(self) -> None:
        """Tell the world this worker is alive (core NATS: a lost beat is no harm)."""
        subject = self.bus.subjects.heartbeat(self.name)
        while True:
            running = sum(1 for job in self.jobs.values() if job.running)
            payload = msgspec.json.encode({"worker": self.name, "running": running})
            with contextlib.suppress(Exception):  # disconnected: the client buffers or refuses
                await self.bus.publish(subject, payload)
            await self.clock.sleep(self.heartbeat_interval)

    async def _restore(self) -> Restored:
        """Restore from the log, waiting (with back-off) while the streams do not exist yet:
        on a fresh site the worker may start before the manager has created them."""
        delay = 0.5
        while True:
            try:
                return await restore(self.bus, self.name)
            except BusError as exc:
                log.warning("cannot restore yet (%s); retrying in %.0fs", exc, delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _shutdown(self) -> None:
        assert self._outbox is not None
        self.emit(WorkerStopped(**self.meta(), reason=self._stop_reason))
        if await self._outbox.flush(self._flush_timeout):
            try:
                await self._outbox.snapshot()
            except BusError as exc:
                log.warning("no snapshot at shutdown: %s", exc)
        else:
            where = self.journal.path or "memory only: they are lost"
            log.error(
                "%d events not yet stored at shutdown (bus unreachable); kept in %s",
                self._outbox.pending,
                where,
            )

    def _restore_jobs(self, states: dict[str, JobState]) -> list[str]:
        """Make the jobs from their restored states; return the ids of the runs a crash cut
        off (closed here as "interrupted"; their leftover processes still need ending)."""
        interrupted: list[str] = []
        now = self.clock.now()
        for mirror in self.config.mirrors:
            job = self._add_job(mirror, states.get(mirror.name))
            state = job.state
            if state.running:
                interrupted.append(state.run_id)
                self.emit(
                    AttemptFailed(
                        **self.job_meta(job),
                        run_id=state.run_id,
                        attempt=state.attempt,
                        error=INTERRUPTED,
                        final=True,
                    )
                )
                self.schedule(job, now)
            elif state.status not in ("paused", "disabled"):
                due = state.next_schedule or now
                if state.next_schedule is None and state.status == "success" and state.last_update:
                    # No next run recorded (a history imported from tunasync, or reported by
                    # an old worker that never sent its schedule): tunasync's own rule, one
                    # interval after the last success, so a fresh success does not run twice.
                    due = state.last_update + mirror.interval
                self.schedule(job, min(due, now + mirror.interval))  # interval may have shrunk
        for name, state in states.items():
            if name not in self.jobs and not state.removed:
                self.emit(JobRemoved(id=new_id(), at=now, worker=self.name, job=name))
        return interrupted

    def _add_job(self, mirror: MirrorConfig, state: JobState | None) -> Job:
        """Make the job of ``mirror`` (with its restored state, if any) and say so if the
        view does not know it with this configuration yet."""
        job = Job(
            mirror=mirror,
            provider=make_provider(mirror, self.config, self._environment),
            state=state or JobState(worker=self.name, name=mirror.name),
            hooks=build_hooks(mirror, self.config),
            subject=self.bus.subjects.job_events(self.name, mirror.name),
        )
        self.jobs[mirror.name] = job
        self._configured(job, known=state is not None)
        return job

    def _configured(self, job: Job, *, known: bool = True) -> None:
        mirror, state = job.mirror, job.state
        interval = int(mirror.interval.total_seconds())
        wanted = (mirror.upstream, interval, mirror.is_master, mirror.provider, False)
        have = (state.upstream, state.interval, state.is_master, state.provider, state.removed)
        if not known or wanted != have or (mirror.desc, mirror.help) != (state.desc, state.help):
            self.emit(
                JobConfigured(
                    **self.job_meta(job),
                    upstream=mirror.upstream,
                    interval=interval,
                    is_master=mirror.is_master,
                    provider=mirror.provider,
                    desc=mirror.desc,
                    help=mirror.help,
                )
            )

    # -- reload --------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Reload the config in the background (SIGHUP); the outcome goes to the log."""
        if self._tg is not None:
            self._tg.start_soon(self.reload)

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file and apply the difference (tunasync §4.9, with fixes).

        Removed jobs are killed and leave the view (``JobRemoved``); modified jobs are killed
        if running and, unless paused or disabled, run again now; added jobs run now.  A
        config that does not load changes nothing.
        """
        async with self._reload_lock:
            path = self.config.path
            try:
                new = await anyio.to_thread.run_sync(load_worker_config, path)
            except MirrorbusError as exc:
                log.error("reload refused, the running config stays: %s", exc)
                return False, f"config not reloaded, the running one stays: {exc}"
            if new.name != self.name:
                return False, (
                    f"{path}: [global] name is now {new.name!r}; a worker cannot "
                    "rename itself: restart it"
                )
            for warning in new.warnings:
                log.warning("%s", warning)
            change = diff(self.config, new)
            self.config = new
            self.limiter.total_tokens = max(new.concurrent, 1)
            for name in change.removed:
                job = self.jobs[name]
                async with job.lock:
                    self.scheduler.unschedule(name)
                    await self.kill(job)
                    self.emit(JobRemoved(**self.job_meta(job)))
                    del self.jobs[name]
            for mirror in change.modified:
                job = self.jobs[mirror.name]
                async with job.lock:
                    self.scheduler.unschedule(job.name)
                    await self.kill(job)
                    job.mirror = mirror
                    job.provider = make_provider(mirror, new, self._environment)
                    job.hooks = build_hooks(mirror, new)
                    self._configured(job)
                    if job.state.status not in ("paused", "disabled"):
                        self.schedule(job, self.clock.now())
            for mirror in change.added:
                self.schedule(self._add_job(mirror, None), self.clock.now())
            for mirror in new.mirrors:  # what is not compared (desc, help): no restart
                same = self.jobs.get(mirror.name)
                if same is not None and same.mirror is not mirror and same.mirror == mirror:
                    same.mirror = mirror
                    self._configured(same)
            message = f"reloaded {path}: {change.summary()}"
            log.info("%s", message)
            return True, message

    # -- scheduling ----------------------------------------------------------------------
    def next_run(self, job: Job) -> datetime:
        """``interval`` after now, plus a random part of the job's ``jitter``."""
        jitter = job.mirror.jitter.total_seconds()
        extra = timedelta(seconds=self.random.uniform(0, jitter)) if jitter > 0 else timedelta(0)
        return self.clock.now() + job.mirror.interval + extra

    def schedule(self, job: Job, at: datetime) -> None:
        self.scheduler.schedule(job.name, at)
        if job.state.next_schedule != at:
            self.emit(JobScheduled(**self.job_meta(job), next_at=at))

    def _on_due(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is None or job.running or job.state.status in ("paused", "disabled"):
            return
        self.launch(job, force=False, reason="schedule")

    def launch(self, job: Job, *, force: bool, reason: str) -> None:
        assert self._tg is not None
        job.scope = anyio.CancelScope()
        job.done = anyio.Event()
        job.kill_reason = KILLED
        job.started = False
        self._tg.start_soon(self._run_job, job, job.scope, force, reason)

    def _host_limiter(self, host: str) -> anyio.CapacityLimiter | None:
        """The limiter of an upstream host, made on first use and resized on reload."""
        limit = self.config.host_limit(host)
        if limit <= 0:
            return None
        limiter = self._host_limiters.get(host)
        if limiter is None:
            limiter = self._host_limiters[host] = anyio.CapacityLimiter(limit)
        elif limiter.total_tokens != limit:
            limiter.total_tokens = limit
        return limiter

    @asynccontextmanager
    async def _slot(self, job: Job, force: bool) -> AsyncIterator[None]:
        """The run's slots: its upstream host's first (so a run waiting for its host does
        not hold one of the ``concurrent`` slots), then the worker's unless forced.  A forced
        run still respects the host limit: the upstream would refuse the extra connection."""
        async with contextlib.AsyncExitStack() as slots:
            host = self._host_limiter(job.mirror.upstream_host)
            if host is not None:
                await slots.enter_async_context(host)
            if not force:
                await slots.enter_async_context(self.limiter)
            yield

    async def _run_job(self, job: Job, scope: anyio.CancelScope, force: bool, reason: str) -> None:
        run = JobRun(
            job,
            AttemptContext(mirror=job.mirror, worker=self.config),
            job.hooks,
            self.name,
            self.clock,
            self.emit,
            force=force,
            reason=reason,
        )
        try:
            with scope:
                async with self._slot(job, force):
                    job.started = True
                    await run.execute()
                    self.schedule(job, self.next_run(job))
            if scope.cancelled_caught:
                await run.close_killed(job.kill_reason)
        except anyio.get_cancelled_exc_class():
            await run.close_killed(SHUTDOWN)
            raise
        finally:
            job.scope = None
            job.started = False
            job.done.set()

    async def kill(self, job: Job, reason: str = KILLED) -> bool:
        """End the job's run (if any) and wait until it is closed; True if one was running."""
        if job.scope is None:
            return False
        job.kill_reason = reason
        done = job.done
        job.scope.cancel()
        await done.wait()
        return True

    # -- for tests and the CLI ---------------------------------------------------------------
    def due_in(self, name: str) -> timedelta | None:
        nxt = self.scheduler.next_time(name)
        return None if nxt is None else nxt - self.clock.now()


def _log_event(event: Event) -> None:
    """tunasync-style notices of what happens to jobs, for the worker's own log."""
    match event:
        case RunStarted():
            log.info(
                "job [%s] starts syncing (%s%s)",
                event.job,
                event.reason,
                ", forced" if event.force else "",
            )
        case RunSucceeded():
            log.info(
                "job [%s] success (attempt %d, size %s)",
                event.job,
                event.attempt,
                event.size or "unknown",
            )
        case AttemptFailed():
            log.warning(
                "job [%s] failed (attempt %d%s): %s",
                event.job,
                event.attempt,
                "" if event.final else ", will retry",
                event.error,
            )
        case JobScheduled() if event.next_at is not None:
            log.info(
                "next scheduled time for %s: %s",
                event.job,
                event.next_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            )
        case CommandAnswered() | WorkerAnswered():
            log.info(
                "command %s %s: %s: %s",
                event.verb,
                event.job or "-",
                "accepted" if event.accepted else "rejected",
                event.message,
            )
