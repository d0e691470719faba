"""Run one job command as its own process group, and end the whole group.

Every job process starts a new session (``start_new_session``), so the job and everything it
forks (shell pipelines, background children) share a process group that is signalled as one:
SIGTERM, two seconds of grace, then SIGKILL.  The group is also swept with SIGKILL after a
normal exit, so a background child left behind by the script does not outlive its job.
(A grandchild that calls ``setsid`` itself leaves the group; that needs the cgroup hook.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio

from mirrorbus.worker.joblog import command_header

KILL_GRACE = 2.0

log = logging.getLogger(__name__)


class JobProcess(Protocol):
    """What the worker needs of a started job process (anyio's ``Process`` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


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

    async def terminate(self, process: JobProcess) -> None:
        """End the job (called before the process group is ended)."""
        ...


current_launcher: ContextVar[Launcher | None] = ContextVar("current_launcher", default=None)
"""The launcher of the attempt being run in this task, if a hook set one."""

RUN_ENV = "MIRRORBUS_RUN"
"""Environment variable carrying the run id into every process of a job's run, so that a
restarted worker can find what a crashed one left running (see :func:`end_leftovers`)."""

current_run: ContextVar[str] = ContextVar("current_run", default="")
"""The id of the run being executed in this task ("" outside runs)."""


class _Default:
    pass


_DEFAULT = _Default()


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None  # None: never started, or ended by a signal we sent
    error: str  # "" on exit 0
    timed_out: bool = False
    header: str = ""  # the command header written before the output ("" if none)


def _reap_exited(pid: int) -> int:
    """Reap child ``pid``, whose pid file descriptor has become readable; its exit code
    (negative: the signal that ended it)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped elsewhere: the status is lost
        log.warning("exit status of child process %d already read: reporting 255", pid)
        return 255
    return os.waitstatus_to_exitcode(status)


class _Child:
    """A job process whose exit is read from its pid file descriptor on the running loop.

    This is what asyncio's subprocess transport does for such a process, without the
    transport: a job process never has pipes (its output goes to the attempt's log file), and
    the transport's protocol, futures and callbacks cost the worker CPU at every start for
    nothing it uses (measured against ``anyio.open_process``; see BENCHMARKS.md).
    """

    __slots__ = ("_exited", "_pidfd", "_popen", "pid", "returncode")

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.pid = popen.pid
        self.returncode: int | None = None
        self._popen = popen
        self._exited = anyio.Event()
        # A child that has already exited is a zombie until reaped: its pidfd is readable.
        self._pidfd = os.pidfd_open(self.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        code = _reap_exited(self.pid)
        self.returncode = self._popen.returncode = code  # Popen must not reap it again
        self._exited.set()

    async def wait(self) -> int:
        if self.returncode is None:
            await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, or a kernel older than 5.3
        return False
    return True


_PIDFD = _has_pidfd()


def _start_child(
    command: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None, output: IO[bytes] | int
) -> _Child:
    # Popen blocks the loop only for the vfork + exec, as asyncio's transport does too.
    popen = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=output, stderr=output, start_new_session=True
    )
    try:
        return _Child(popen)
    except OSError:  # no pid fd (out of file descriptors): leave nothing running unwatched
        _signal_group(popen.pid, signal.SIGKILL)
        popen.wait()
        raise


async def start_process(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | int = subprocess.DEVNULL,
) -> JobProcess:
    """Start ``command`` as the leader of a new session (its own process group), stdout and
    stderr to ``output``, stdin inherited.  Its exit is read from a pid file descriptor on the
    running loop where the kernel has them (5.3+), else through asyncio's subprocess
    transport.  ``env`` None: the worker's own environment."""
    if _PIDFD:
        return _start_child(command, cwd, env, output)
    return await anyio.open_process(
        command, cwd=cwd, env=env, stdin=None, stdout=output, stderr=output, start_new_session=True
    )


class _PidfdWatcher(asyncio.AbstractChildWatcher):
    """Python 3.12's child watcher, for 3.11: each child's exit is a readable pid file
    descriptor on the running loop.  3.11's default starts a thread per child that blocks in
    ``waitpid``: a thread start for every job process (about a fifth of a worker's CPU per
    run when many short jobs start) and a thread kept per running job."""

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass

    def __enter__(self) -> _PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_child_handler(self, pid: int, callback: Callable[..., object], *args: object) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop.add_reader(pidfd, self._do_wait, loop, pid, pidfd, callback, args)

    def _do_wait(
        self,
        loop: asyncio.AbstractEventLoop,
        pid: int,
        pidfd: int,
        callback: Callable[..., object],
        args: tuple[object, ...],
    ) -> None:
        loop.remove_reader(pidfd)
        returncode = _reap_exited(pid)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return True  # asyncio never calls it


def use_pidfd_child_watcher() -> bool:
    """On Python 3.11 with a kernel that has pidfds (5.3+), watch job processes with
    :class:`_PidfdWatcher` instead of a thread each; True if pidfds are in use (3.12 and
    newer choose them by themselves)."""
    if sys.version_info >= (3, 12):
        return True
    policy = asyncio.get_event_loop_policy()
    if isinstance(policy.get_child_watcher(), _PidfdWatcher):
        return True
    if not _PIDFD:  # an older kernel: keep the threads
        return False
    policy.set_child_watcher(_PidfdWatcher())
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


async def end_group(process: JobProcess, grace: float = KILL_GRACE) -> None:
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
    header: bool = False,
) -> ProcessResult:
    """Run ``argv`` to completion (or timeout), output to ``output``.

    With ``header``, ``output`` first gets the command, working dir and the names of the
    environment variables set (:func:`~mirrorbus.worker.joblog.command_header`).

    Cancellation (stop, disable, restart, shutdown) ends the process group before it
    propagates; the caller reports the reason.  ``launcher`` (default: the attempt's
    :data:`current_launcher`; None: plainly on the host) may wrap the command.
    """
    chosen = current_launcher.get() if isinstance(launcher, _Default) else launcher
    env = dict(env)
    if run := current_run.get():
        env[RUN_ENV] = run
    command, environment = (
        chosen.command(argv, env, cwd) if chosen is not None else (list(argv), env)
    )
    text = ""
    if header:
        text = command_header(argv, cwd, env, os.environ, command)
        output.write(text.encode(errors="surrogateescape"))
    try:
        process = await start_process(command, cwd=cwd, env=environment, output=output)
    except OSError as exc:
        return ProcessResult(
            exit_code=None, error=f"cannot start {argv[0]}: {exc.strerror or exc}", header=text
        )
    try:
        if chosen is not None:
            await chosen.started(process.pid)
        with anyio.move_on_after(timeout) as scope:
            code = await process.wait()
        if scope.cancelled_caught:
            return ProcessResult(
                exit_code=None,
                error=f"timeout after {_human(timeout)}",
                timed_out=True,
                header=text,
            )
        if code < 0:
            return ProcessResult(
                exit_code=code, error=f"signal: {_signal_name(-code)}", header=text
            )
        return ProcessResult(
            exit_code=code, error="" if code == 0 else f"exit status {code}", header=text
        )
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


def _has_run(pid: str, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return marker in fh.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def leftovers(run_id: str) -> list[int]:
    """Processes still carrying ``MIRRORBUS_RUN=<run_id>``: what a crashed worker left behind
    of that run, daemonised grandchildren included (unless they wiped their environment)."""
    if not run_id:
        return []
    marker = f"{RUN_ENV}={run_id}".encode()
    own = str(os.getpid())
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != own]
    except OSError:
        return []
    return [int(p) for p in pids if _has_run(p, marker)]


async def end_leftovers(run_id: str, grace: float = KILL_GRACE) -> int:
    """SIGTERM, then SIGKILL, every leftover process of ``run_id``; return how many there were.

    Used when a worker restores a run that was cut off by a crash: the run is closed as
    "interrupted" and nothing of it may keep writing into the mirror.
    """
    found = leftovers(run_id)
    total = len(found)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = anyio.current_time() + grace
    while found and anyio.current_time() < deadline:
        await anyio.sleep(0.05)
        found = leftovers(run_id)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return total
