"""Job processes, with real processes: exit codes, timeouts, and no orphan left behind.

A job is its own process group; exit, timeout and cancellation must leave no process of the
group alive (docs/design.md, "Worker rules").  A background child of a finished job is reparented
to init and may linger as a zombie until init reaps it: a zombie counts as dead.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import anyio
import pytest

from mirrorbus.worker import process
from mirrorbus.worker.process import (
    ProcessResult,
    current_run,
    leftovers,
    run_process,
    use_pidfd_child_watcher,
)

pytestmark = pytest.mark.e2e  # every test here starts processes

SH = "/bin/sh"
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


async def wait_dead(pid: int, within: float = 2.0) -> bool:
    """True once ``pid`` is gone (a kill is asynchronous: give it a moment)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await anyio.sleep(0.02)
    return not alive(pid)


def pid_in(pidfile: Path) -> int | None:
    """The pid written to ``pidfile``, once the line is complete."""
    text = pidfile.read_text() if pidfile.exists() else ""
    return int(text) if text.endswith("\n") else None


async def read_pid(pidfile: Path, within: float = 3.0) -> int:
    with anyio.fail_after(within):
        while True:
            pid = pid_in(pidfile)
            if pid is not None:
                return pid
            await anyio.sleep(0.01)


def started(directory: Path) -> int:
    """How many ``started.*`` files the jobs in ``directory`` have written."""
    return len(list(directory.glob("started.*")))


def same_dir(a: str, b: Path) -> bool:
    return Path(a).resolve() == b.resolve()


@pytest.fixture(autouse=True, params=["pidfd", "transport"])
def spawn(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with both ways of starting a job process: the worker's own (``Popen``,
    its exit read from a pid file descriptor on the loop) and asyncio's subprocess transport,
    which is kept for kernels without pid file descriptors."""
    if request.param == "pidfd" and not process._PIDFD:
        pytest.skip("this kernel has no pid file descriptors")
    monkeypatch.setattr(process, "_PIDFD", request.param == "pidfd")
    return str(request.param)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[IO[bytes]]:
    with (tmp_path / "job.log").open("wb") as f:
        yield f


@pytest.fixture
def stray_pids() -> Iterator[list[int]]:
    """Pids a test saw; anything still alive at the end is killed so no test leaks processes."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, 9)


async def run(
    argv: list[str], out: IO[bytes], tmp: Path, timeout: float | None = 10
) -> ProcessResult:
    return await run_process(argv, cwd=tmp, env=ENV, output=out, timeout=timeout)


@pytest.mark.anyio
async def test_success_and_output_go_to_the_file(tmp_path: Path, out: IO[bytes]) -> None:
    result = await run([SH, "-c", "echo to-stdout; echo to-stderr >&2"], out, tmp_path)
    assert result == ProcessResult(exit_code=0, error="", timed_out=False)
    out.flush()
    text = (tmp_path / "job.log").read_text()
    assert "to-stdout\n" in text
    assert "to-stderr\n" in text


@pytest.mark.anyio
async def test_cwd_and_environment(tmp_path: Path, out: IO[bytes]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {**ENV, "TUNASYNC_MIRROR_NAME": "debian"}
    result = await run_process(
        [SH, "-c", 'pwd; echo "name=$TUNASYNC_MIRROR_NAME home=${HOME-unset}"'],
        cwd=work,
        env=env,
        output=out,
        timeout=10,
    )
    assert result.exit_code == 0
    lines = (tmp_path / "job.log").read_text().splitlines()
    assert same_dir(lines[0], work)
    assert lines[1] == "name=debian home=unset"  # exactly the given environment


@pytest.mark.anyio
@pytest.mark.parametrize("code", [1, 3, 23, 255])
async def test_exit_codes_and_error_texts(tmp_path: Path, out: IO[bytes], code: int) -> None:
    result = await run([SH, "-c", f"exit {code}"], out, tmp_path)
    assert result == ProcessResult(exit_code=code, error=f"exit status {code}", timed_out=False)


@pytest.mark.anyio
async def test_killed_by_a_signal_of_its_own(tmp_path: Path, out: IO[bytes]) -> None:
    result = await run([SH, "-c", "kill -KILL $$"], out, tmp_path)
    assert (result.exit_code, result.error, result.timed_out) == (-9, "signal: SIGKILL", False)


@pytest.mark.anyio
async def test_killed_by_an_unnamed_signal(tmp_path: Path, out: IO[bytes]) -> None:
    result = await run([SH, "-c", "kill -s 40 $$"], out, tmp_path)
    assert result.exit_code == -40
    assert "40" in result.error


@pytest.mark.anyio
async def test_timeout(tmp_path: Path, out: IO[bytes]) -> None:
    begin = time.monotonic()
    result = await run(["sleep", "30"], out, tmp_path, timeout=1)
    assert result == ProcessResult(exit_code=None, error="timeout after 1s", timed_out=True)
    assert time.monotonic() - begin < 4


@pytest.mark.anyio
async def test_a_missing_command_is_a_clear_error(tmp_path: Path, out: IO[bytes]) -> None:
    result = await run(["/nonexistent/rsync-wrapper", "--x"], out, tmp_path)
    assert result.exit_code is None
    assert not result.timed_out
    assert result.error.startswith("cannot start /nonexistent/rsync-wrapper")
    assert "No such file" in result.error
    result = await run(["no-such-program-mirrorbus"], out, tmp_path)
    assert result.exit_code is None
    assert "no-such-program-mirrorbus" in result.error


@pytest.mark.anyio
async def test_a_file_that_is_not_executable(tmp_path: Path, out: IO[bytes]) -> None:
    script = tmp_path / "sync.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    result = await run([str(script)], out, tmp_path)
    assert result.exit_code is None
    assert "Permission denied" in result.error


@pytest.mark.anyio
async def test_no_background_child_outlives_a_finished_job(
    tmp_path: Path, out: IO[bytes], stray_pids: list[int]
) -> None:
    pidfile = tmp_path / "pid"
    result = await run([SH, "-c", f"sleep 300 & echo $! > {pidfile}"], out, tmp_path)
    assert result.exit_code == 0
    child = await read_pid(pidfile)
    stray_pids.append(child)
    assert await wait_dead(child)


@pytest.mark.anyio
async def test_timeout_ends_the_whole_group(
    tmp_path: Path, out: IO[bytes], stray_pids: list[int]
) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pidfile}; echo $$ >> {pidfile}.leader; sleep 300"
    result = await run([SH, "-c", script], out, tmp_path, timeout=1)
    assert result.timed_out
    child = await read_pid(pidfile)
    leader = await read_pid(Path(f"{pidfile}.leader"))
    stray_pids.extend([child, leader])
    assert await wait_dead(child)
    assert await wait_dead(leader)


@pytest.mark.anyio
async def test_a_child_that_ignores_sigterm_is_killed(
    tmp_path: Path, out: IO[bytes], stray_pids: list[int]
) -> None:
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; sleep 300 & echo $! > {pidfile}; sleep 300"
    begin = time.monotonic()
    result = await run([SH, "-c", script], out, tmp_path, timeout=0.5)
    assert (result.timed_out, result.error) == (True, "timeout after 0.5s")
    child = await read_pid(pidfile)
    stray_pids.append(child)
    assert await wait_dead(child)
    assert time.monotonic() - begin < 6  # SIGKILL after the grace period


@pytest.mark.anyio
async def test_cancellation_ends_the_whole_group(
    tmp_path: Path, out: IO[bytes], stray_pids: list[int]
) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pidfile}; echo $$ >> {pidfile}.leader; sleep 300"
    results: list[ProcessResult] = []

    async def job() -> None:
        results.append(await run([SH, "-c", script], out, tmp_path, timeout=None))

    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(job)
            child = await read_pid(pidfile)
            leader = await read_pid(Path(f"{pidfile}.leader"))
            stray_pids.extend([child, leader])
            assert alive(child)
            assert alive(leader)
            tg.cancel_scope.cancel()
    assert results == []  # cancellation propagated, no result made up
    assert await wait_dead(child)
    assert await wait_dead(leader)


@pytest.mark.anyio
async def test_job_processes_are_watched_without_a_thread_each(
    tmp_path: Path, out: IO[bytes]
) -> None:
    """Python 3.11's asyncio watches each child with a thread blocked in ``waitpid``; the worker
    uses pid file descriptors instead (3.12's way): eight jobs at once add no thread, and
    each still gets its own exit status, also when a timeout or a cancellation ends it."""
    assert use_pidfd_child_watcher()
    before = threading.active_count()
    results: dict[int, ProcessResult] = {}

    async def one(code: int) -> None:
        # Each says it runs, then waits (up to the run's timeout) until the test lets it end.
        script = f": > started.{code}; while [ ! -e go ]; do sleep 0.02; done; exit {code}"
        results[code] = await run([SH, "-c", script], out, tmp_path)

    async with anyio.create_task_group() as tg:
        for code in range(8):
            tg.start_soon(one, code)
        with anyio.fail_after(10):
            while started(tmp_path) < 8:  # noqa: ASYNC110 - other processes write them
                await anyio.sleep(0.02)
        during = threading.active_count()  # all eight running
        (tmp_path / "go").touch()
    assert during == before
    assert [results[code].exit_code for code in range(8)] == list(range(8))
    timed = await run([SH, "-c", "sleep 5"], out, tmp_path, timeout=0.2)
    assert timed.timed_out and timed.error == "timeout after 0.2s"
    with anyio.move_on_after(0.2):
        await run([SH, "-c", "sleep 5"], out, tmp_path)
    assert (await run([SH, "-c", "exit 3"], out, tmp_path)).exit_code == 3  # still watching


@pytest.mark.anyio
async def test_a_process_that_cannot_be_watched_is_not_left_running(
    tmp_path: Path, out: IO[bytes], spawn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of file descriptors right after the start (no pid fd for the new process): the
    attempt fails with the reason, and the process it started is killed, not left unwatched."""
    if spawn != "pidfd":
        pytest.skip("asyncio's transport watches its processes itself")

    def no_fd(pid: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", no_fd)
    token = current_run.set(f"unwatched-{os.getpid()}-{time.monotonic_ns()}")
    try:
        result = await run([SH, "-c", "sleep 30"], out, tmp_path)
        assert leftovers(current_run.get()) == []
    finally:
        current_run.reset(token)
    assert result.exit_code is None
    assert result.error == "cannot start /bin/sh: Too many open files"
