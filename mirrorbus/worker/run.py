"""One run of a job: its attempts, hooks and log files, told as events.

The order is tunasync's (docs/tunasync.md §2.10, §4.1): ``RunStarted`` (pre-syncing), the
``pre-job`` hooks, then per attempt: a new log file and the working dir if missing (after
the ``pre-job`` hooks, which may make it a btrfs subvolume), ``pre-exec`` hooks, ``AttemptStarted``
(syncing), the provider, ``post-exec`` hooks, then ``post-success`` hooks and ``RunSucceeded``,
or ``post-fail`` hooks, the ``.fail`` rename and ``AttemptFailed``.  A hook error ends the run
with ``error exec hook <phase>: ...``.  A run that is killed (stop, disable, restart, shutdown)
still gets its ``post-exec`` and ``post-fail`` hooks, under a time limit, because that is
where the cgroup hook ends every process of the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

import anyio

from mirrorbus.clock import Clock, new_id
from mirrorbus.config.worker import MirrorConfig
from mirrorbus.dirs import make_dirs
from mirrorbus.events import AttemptFailed, AttemptStarted, Event, RunStarted, RunSucceeded
from mirrorbus.worker.hooks.base import AttemptContext, Hook, run_phase
from mirrorbus.worker.joblog import AttemptLog, new_attempt_log
from mirrorbus.worker.process import current_launcher, current_run

if TYPE_CHECKING:
    from mirrorbus.worker.job import Job


class _RunMeta(TypedDict):
    id: str
    at: datetime
    worker: str
    job: str
    run_id: str


KILLED_HOOK_TIME = 30.0
"""Seconds the post-exec/post-fail hooks of a killed run may take (they run shielded)."""


MAX_BACKOFF = 3600.0


def backoff(base: float, attempt: int) -> float:
    """Seconds to wait before ``attempt`` (2, 3, ...): base, 2·base, 4·base, ... at most 1 h."""
    return min(base * 2.0 ** (attempt - 2), MAX_BACKOFF)


def prepare_attempt(mirror: MirrorConfig, now: datetime) -> tuple[AttemptLog | None, str]:
    """The file-system side of a new attempt: the attempt's log file, then the job's working
    dir (0755) if it is missing.  Returns the log (None if it could not be made) and the error
    ("" if none).

    Done on the event loop.  A trip to a worker thread cost more CPU in GIL hand-offs than
    this work costs on a healthy file system (see BENCHMARKS.md), and the thread never kept
    slow storage off the loop: the job's process is started on the loop, in the same working
    dir, next to the same log file."""
    try:
        log = new_attempt_log(mirror.log_dir, mirror.name, now, mirror.keep_logs)
    except OSError as exc:
        return None, f"cannot create log file in {mirror.log_dir}: {exc}"
    try:
        make_dirs(mirror.working_dir, 0o755)
    except OSError as exc:
        return log, f"cannot create working dir {mirror.working_dir}: {exc.strerror or exc}"
    return log, ""


class JobRun:
    def __init__(
        self,
        job: Job,
        ctx: AttemptContext,
        hooks: list[Hook],
        worker: str,
        clock: Clock,
        emit: Callable[[Event], None],
        *,
        force: bool,
        reason: str,
    ) -> None:
        self.job = job
        self.ctx = ctx
        self.hooks = hooks
        self.worker = worker
        self.clock = clock
        self.emit = emit
        self.force = force
        self.reason = reason
        self.run_id = new_id()
        self.attempt = 0
        self.open = False  # RunStarted emitted, final event not yet
        self.log: AttemptLog | None = None
        self.executing = False  # between pre-exec and the end of post-exec

    def _meta(self) -> _RunMeta:
        return {
            "id": new_id(),
            "at": self.clock.now(),
            "worker": self.worker,
            "job": self.job.name,
            "run_id": self.run_id,
        }

    def _fail(self, error: str, *, final: bool, exit_code: int | None = None) -> None:
        self.open = not final
        self.emit(
            AttemptFailed(
                **self._meta(), attempt=self.attempt, error=error, exit_code=exit_code, final=final
            )
        )

    async def execute(self) -> None:
        """Run every attempt; return when the run is closed (success, failure, hook error)."""
        mirror = self.job.mirror
        self.emit(RunStarted(**self._meta(), force=self.force, reason=self.reason))
        self.open = True
        if error := await run_phase(self.hooks, "pre-job", self.ctx):
            self._fail(error, final=True)
            return
        retry = max(mirror.retry, 1)
        for attempt in range(1, retry + 1):
            self.attempt = attempt
            final = attempt == retry
            if attempt > 1 and mirror.retry_backoff:
                await anyio.sleep(backoff(mirror.retry_backoff.total_seconds(), attempt))
            log, problem = prepare_attempt(mirror, self.clock.now())
            if log is None or problem:
                if log is not None:
                    log.mark_failed()
                self._fail(problem, final=final)
                continue
            self.log = log
            self.ctx.log_file = self.log.path
            self.ctx.exit_status = None
            self.ctx.launcher = None
            self.executing = True
            if error := await run_phase(self.hooks, "pre-exec", self.ctx):
                self.executing = False
                self.log.mark_failed()
                self._fail(error, final=True)
                return
            self.emit(AttemptStarted(**self._meta(), attempt=attempt, log_file=str(self.log.path)))
            token = current_launcher.set(self.ctx.launcher)
            run_token = current_run.set(self.run_id)
            try:
                outcome = await self.job.provider.run_attempt(self.log)
            finally:
                current_run.reset(run_token)
                current_launcher.reset(token)
            error = await run_phase(self.hooks, "post-exec", self.ctx)
            self.executing = False
            if error:
                self.log.mark_failed()
                self._fail(error, final=True)
                return
            if outcome.ok:
                self.ctx.exit_status = "success"
                if error := await run_phase(self.hooks, "post-success", self.ctx):
                    self._fail(error, final=True)
                    return
                self.open = False
                self.emit(
                    RunSucceeded(
                        **self._meta(),
                        attempt=attempt,
                        size=outcome.size,
                        exit_code=outcome.exit_code,
                    )
                )
                return
            self.ctx.exit_status = "failure"
            hook_error = await run_phase(self.hooks, "post-fail", self.ctx)
            self.log.mark_failed()
            if hook_error:
                self._fail(hook_error, final=True)
                return
            self._fail(outcome.error, final=final, exit_code=outcome.exit_code)

    async def close_killed(self, reason: str) -> None:
        """Close a run that was cancelled: its hooks' cleanup, the ``.fail`` log, the event."""
        if not self.open:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(KILLED_HOOK_TIME):
            if self.executing:
                await run_phase(self.hooks, "post-exec", self.ctx)
                self.executing = False
            self.ctx.exit_status = "failure"
            await run_phase(self.hooks, "post-fail", self.ctx)
        if self.log is not None:
            with contextlib.suppress(OSError):
                self.log.mark_failed()
        self._fail(reason, final=True)
