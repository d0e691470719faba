"""Run one job command as its own process group, and end the whole group.

Every job process starts a new session (``start_new_session``), so the job and everything it
forks (shell pipelines, background children) share a process group that is signalled as one:
SIGTERM, two seconds of grace, then SIGKILL.  The group is also swept with SIGKILL after a
normal exit, so a background child left behind by the script does not outlive its job.
(A grandchild that calls ``setsid`` itself leaves the group; that needs the cgroup hook.)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio
from anyio.abc import Process

KILL_GRACE = 2.0


class Launcher(Protocol):
    """Changes how a job's process is started and ended (docker, cgroup).

    Set for the duration of an attempt with :data:`current_launcher`; providers need not know.
    """

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment to actually execute."""
        ...

    async def started(self, pid: int) -> None:
        """Called once the process exists (before it is waited for)."""
        ...

    async def terminate(self, process: Process) -> None:
        """End the job (called before the process group is ended)."""
        ...


current_launcher: ContextVar[Launcher | None] = ContextVar("current_launcher", default=None)
"""The launcher of the attempt being run in this task, if a hook set one."""


class _Default:
    pass


_DEFAULT = _Default()


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None  # None: never started, or ended by a signal we sent
    error: str  # "" on exit 0
    timed_out: bool = False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


async def end_group(process: Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, SIGKILL after ``grace`` seconds; always sweep the group."""
    pgid = process.pid  # leader of its own session/group
    if process.returncode is None:
        _signal_group(pgid, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await process.wait()
    _signal_group(pgid, signal.SIGKILL)
    if process.returncode is None:
        await process.wait()


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: IO[bytes],
    timeout: float | None,
    launcher: Launcher | _Default | None = _DEFAULT,
) -> ProcessResult:
    """Run ``argv`` to completion (or timeout), output to ``output``.

    Cancellation (stop, disable, restart, shutdown) ends the process group before it
    propagates; the caller reports the reason.  ``launcher`` (default: the attempt's
    :data:`current_launcher`; None: plainly on the host) may wrap the command.
    """
    chosen = current_launcher.get() if isinstance(launcher, _Default) else launcher
    command, environment = (
        chosen.command(argv, env, cwd) if chosen is not None else (list(argv), dict(env))
    )
    try:
        process = await anyio.open_process(
            command,
            cwd=cwd,
            env=environment,
            stdin=None,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    except OSError as exc:
        return ProcessResult(exit_code=None, error=f"cannot start {argv[0]}: {exc.strerror or exc}")
    try:
        if chosen is not None:
            await chosen.started(process.pid)
        with anyio.move_on_after(timeout) as scope:
            code = await process.wait()
        if scope.cancelled_caught:
            return ProcessResult(
                exit_code=None, error=f"timeout after {_human(timeout)}", timed_out=True
            )
        if code < 0:
            return ProcessResult(exit_code=code, error=f"signal: {_signal_name(-code)}")
        return ProcessResult(exit_code=code, error="" if code == 0 else f"exit status {code}")
    finally:
        with anyio.CancelScope(shield=True):
            if chosen is not None:
                await chosen.terminate(process)
            await end_group(process)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # e.g. a real-time signal
        return f"signal {number}"


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
