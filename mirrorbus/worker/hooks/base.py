"""The hook interface, the exec hooks, and one phase over a job's hooks (docs/tunasync.md §4.1).

A run calls the hooks at five points: ``pre_job`` once per run, then per attempt
``pre_exec``, (the provider runs), ``post_exec``, and ``post_success`` or ``post_fail``.
``pre_*`` run in the order the hooks are attached, ``post_*`` in reverse order.  The attach
order (:func:`mirrorbus.worker.hooks.attach.build_hooks`) is tunasync's: (1) zfs, (2) btrfs
snapshot, (3) docker, else cgroup, (4) exec_on_success commands, (5) exec_on_success_extra,
(6) exec_on_failure, (7) exec_on_failure_extra.  (The log hook, tunasync's first, is built into
the run: it makes the attempt's log before every other ``pre_exec`` and renames it ``.fail``
after every other ``post_fail``.)  Hence multiple ``exec_on_*`` commands run in reverse of their
listed order and ``*_extra`` before the base list, as in tunasync.

The first hook error ends the run: it is reported as ``error exec hook <phase>: <error>``.

A hook that changes how the job's process is started (docker, cgroup) sets
:attr:`AttemptContext.launcher`; the provider's processes are then started through it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mirrorbus.config.worker import MirrorConfig, WorkerConfig
from mirrorbus.errors import HookError as HookError  # its home before errors.py; still here
from mirrorbus.worker.process import Launcher, run_process
from mirrorbus.worker.providers.base import tunasync_environment

log = logging.getLogger(__name__)

Phase = Literal["pre-job", "pre-exec", "post-exec", "post-success", "post-fail"]

EXEC_HOOK_TIMEOUT = 600.0
"""Seconds an exec_on_* command may run (tunasync: forever, blocking the job)."""


@dataclass
class AttemptContext:
    """What hooks see and may change for one run (and its current attempt)."""

    mirror: MirrorConfig
    worker: WorkerConfig
    log_file: Path | None = None
    exit_status: Literal["success", "failure"] | None = None
    launcher: Launcher | None = None
    extra_volumes: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """tunasync's hook environment: worker env + ``TUNASYNC_*`` (no mirror ``env``)."""
        env = tunasync_environment(self.mirror, self.log_file or "")
        if self.exit_status is not None:
            env["TUNASYNC_JOB_EXIT_STATUS"] = self.exit_status
        return env


class Hook:
    """Base hook: every phase does nothing.  Subclasses override the phases they need."""

    name = "hook"

    async def pre_job(self, ctx: AttemptContext) -> None:
        return None

    async def pre_exec(self, ctx: AttemptContext) -> None:
        return None

    async def post_exec(self, ctx: AttemptContext) -> None:
        return None

    async def post_success(self, ctx: AttemptContext) -> None:
        return None

    async def post_fail(self, ctx: AttemptContext) -> None:
        return None


class ExecHook(Hook):
    """One ``exec_on_success`` or ``exec_on_failure`` command, run on the worker's host.

    Its output goes to the attempt's log file (tunasync: the worker's own stdout, where nobody
    looks for it), it has a time limit, and a non-zero exit is a hook error.
    """

    def __init__(
        self,
        argv: Sequence[str],
        on: Literal["success", "failure"],
        timeout: float = EXEC_HOOK_TIMEOUT,
    ) -> None:
        self.argv = tuple(argv)
        self.on = on
        self.timeout = timeout
        self.name = f"exec_on_{on}"

    async def _run(self, ctx: AttemptContext) -> None:
        if not self.argv:
            raise HookError("Invalid Command")
        target = ctx.log_file if ctx.log_file is not None else Path(os.devnull)
        with open(target, "ab", buffering=0) as output:  # noqa: ASYNC230 - a local file
            result = await run_process(
                self.argv,
                cwd=Path.cwd(),
                env=ctx.environment(),
                output=output,
                timeout=self.timeout,
                launcher=None,
            )
        if result.error:
            raise HookError(result.error)

    async def post_success(self, ctx: AttemptContext) -> None:
        if self.on == "success":
            await self._run(ctx)

    async def post_fail(self, ctx: AttemptContext) -> None:
        if self.on == "failure":
            await self._run(ctx)


async def run_phase(hooks: Sequence[Hook], phase: Phase, ctx: AttemptContext) -> str | None:
    """Run one phase over ``hooks`` (reverse order for post-*); return the error text or None.

    The error text is what the run reports: ``error exec hook <phase>: <error>``.
    """
    ordered = hooks if phase.startswith("pre") else list(reversed(hooks))
    method = phase.replace("-", "_")
    for hook in ordered:
        try:
            await getattr(hook, method)(ctx)
        except (HookError, OSError) as exc:
            log.warning("job [%s] hook %s %s failed: %s", ctx.mirror.name, hook.name, phase, exc)
            return f"error exec hook {phase}: {exc}"
    return None
