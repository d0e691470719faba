"""Scenario 4: how fast a worker starts 10,000 due jobs with ``concurrent = 64``.

Figure: a real :class:`~mirrorbus.worker.service.Worker` (config written as TOML, jobs
running ``true``, all due at start) driven until every job has finished its run; starts per
second = jobs / time from the scheduler's start to the last run's end.  Baseline: the same
processes started in a plain loop, 64 at a time, with the worker's own way of starting one
(:func:`~mirrorbus.worker.process.start_process` + ``wait``: leaner than ``anyio.open_process``,
so the baseline is the faster of the two), half of them before the worker's runs and half
after.
tunasync's design starts at most one due job per 5 s tick: 0.2 starts/s.

The judged figure is the worker's first start, where every job is new: configured (an event
each), its log and working directories made, run once.  A second figure, not judged, starts
the same worker again with its clock two days later: every job overdue, nothing new, as when a
site's worker comes back after a long stop.

Two more rows, not judged, tell the scheduler from the disk.  A job's first run makes four new
inodes (its log dir, its working dir, the log file and the ``latest`` link; later runs two),
which the plain loop does not: their cost is measured in the same run on the job files'
file system and on a tmpfs (``/dev/shm``), and a second worker runs the same jobs with its
files on that tmpfs.  On ext4 a new inode can cost many times its cost on tmpfs in kernel
CPU, depending on how many files were deleted in the minutes before (the allocator steps over
recently freed inodes); see BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from benchmarks.harness import Row, Stack, judged, write_worker_config
from mirrorbus.bus import Bus
from mirrorbus.clock import Clock, SystemClock
from mirrorbus.config.worker import load_worker_config
from mirrorbus.events import AttemptFailed, Event, RunStarted, RunSucceeded
from mirrorbus.worker.process import start_process
from mirrorbus.worker.service import Worker

WORKER = "sched"
RAM_WORKER = "schedram"
RAM_DIR = Path("/dev/shm")
"""A tmpfs on most Linux systems: where the second worker keeps its job files."""
INODES = 400
"""New directories made to time an inode on each file system."""
CONCURRENT = 64
TUNASYNC_RATE = 0.2
RESTART_AFTER = timedelta(days=2)
"""How much later the restarted worker's clock is: past every job's next run (interval 1 day)."""


class CountingWorker(Worker):
    """A Worker that counts run starts and ends as it emits them (nothing else changes)."""

    def __init__(self, *args: object, expect: int, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.expect = expect
        self.starts = 0
        self.ends = 0
        self.failures = 0
        self.all_done = anyio.Event()

    def emit(self, event: Event) -> None:
        super().emit(event)
        if isinstance(event, RunStarted):
            self.starts += 1
        elif isinstance(event, RunSucceeded | AttemptFailed):
            self.ends += 1
            self.failures += isinstance(event, AttemptFailed)
            if self.ends >= self.expect:
                self.all_done.set()


class LaterClock(SystemClock):
    """The system clock, ``ahead`` later: a worker restarted after a long stop."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


async def run_worker(
    bus: Bus, config: Path, jobs: int, timeout: float, clock: Clock | None = None
) -> tuple[float, int]:
    """Start a worker with ``jobs`` due jobs; return (seconds until all ran, failures)."""
    cfg = await anyio.to_thread.run_sync(load_worker_config, config)
    worker = CountingWorker(
        cfg, bus, clock, expect=jobs, snapshot_every=10**9, flush_timeout=120, freeze_gc=True
    )  # as `mirrorbus worker` runs it
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        started = time.perf_counter()
        with anyio.fail_after(timeout):
            await worker.all_done.wait()
        elapsed = time.perf_counter() - started
        worker.stop("benchmark done")
    return elapsed, worker.failures


async def plain_loop(jobs: int, concurrent: int = CONCURRENT) -> float:
    """Seconds to run ``true`` ``jobs`` times, ``concurrent`` at a time, with nothing else:
    started as the worker starts a job's process (:func:`start_process`, a new session, its
    exit read from a pid file descriptor), output to ``/dev/null``, the environment inherited."""
    limiter = anyio.CapacityLimiter(concurrent)

    async def one() -> None:
        async with limiter:
            process = await start_process(["true"])
            await process.wait()

    started = time.perf_counter()
    with anyio.fail_after(max(60.0, jobs / 20)):
        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(one)
    return time.perf_counter() - started


def tmpfs_dir() -> Path | None:
    """:data:`RAM_DIR` if it is a tmpfs mount, else None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[1] == str(RAM_DIR) and fields[2] == "tmpfs":
            return RAM_DIR
    return None


def inode_cost(directory: Path, count: int = INODES) -> float:
    """CPU seconds (user + kernel) to make one new directory in ``directory``.  The
    directories are left in place: deleting them would slow the next inodes down."""
    where = Path(tempfile.mkdtemp(prefix="inodes-", dir=directory))
    started = time.process_time()
    for n in range(count):
        os.mkdir(where / str(n))
    return (time.process_time() - started) / count


@dataclass(frozen=True, slots=True)
class Measured:
    """Starts per second of one scheduler measurement, and what else it saw."""

    worker: float
    plain: float
    failures: int = 0
    restart: float | None = None
    ram: float | None = None  # the worker with its job files on a tmpfs
    inode_disk: float | None = None  # CPU seconds per new inode, job files' file system
    inode_ram: float | None = None  # the same on the tmpfs


async def worker_rate(
    st: Stack, name: str, config: Path, jobs: int, clock: Clock | None = None
) -> tuple[float, int]:
    """(starts/s, failed runs) of worker ``name`` on a connection of its own."""
    bus = await st.bus("worker", name)
    try:
        seconds, failures = await run_worker(bus, config, jobs, max(120.0, jobs / 10), clock)
    finally:
        await bus.close()
    return jobs / seconds, failures


async def measure(st: Stack, jobs: int, *, restart: bool = False, ram: bool = False) -> Measured:
    """Starts per second of the worker and of the plain loop for ``jobs`` jobs.

    The worker's first start: every job new (configured, its directories made, run once).
    With ``restart``, the same worker is then started again two days later by its clock, so
    every job is overdue: the starts of a site whose worker was down, jobs and directories
    known.  With ``ram`` (and a tmpfs at :data:`RAM_DIR`), the cost of a new inode is timed
    on both file systems and another worker runs the same jobs with its files on the tmpfs.
    """
    await st.ensure_streams()
    root = st.root / f"sched-{jobs}"
    root.mkdir(parents=True, exist_ok=True)
    config = write_worker_config(root, WORKER, jobs, concurrent=CONCURRENT)
    ram_dir = tmpfs_dir() if ram else None
    rate_restart = rate_ram = inode_disk = inode_ram = None
    # The baseline in two halves, before and after the workers: a shared machine's speed
    # drifts over a minute, and then weighs on both figures alike.
    base_s = await plain_loop(jobs // 2)
    with contextlib.ExitStack() as cleanup:
        ram_tmp: Path | None = None
        if ram_dir is not None:
            ram_tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(dir=ram_dir)))
            inode_disk, inode_ram = inode_cost(root), inode_cost(ram_tmp)
        rate, failures = await worker_rate(st, WORKER, config, jobs)
        if restart:
            rate_restart, more = await worker_rate(
                st, WORKER, config, jobs, LaterClock(RESTART_AFTER)
            )
            failures += more
        if ram_tmp is not None:
            ram_config = write_worker_config(ram_tmp, RAM_WORKER, jobs, concurrent=CONCURRENT)
            rate_ram, more = await worker_rate(st, RAM_WORKER, ram_config, jobs)
            failures += more
    base_s += await plain_loop(jobs - jobs // 2)
    return Measured(
        worker=rate,
        plain=jobs / base_s,
        failures=failures,
        restart=rate_restart,
        ram=rate_ram,
        inode_disk=inode_disk,
        inode_ram=inode_ram,
    )


async def scheduler(st: Stack, jobs: int, full: int) -> list[Row]:
    got = await measure(st, jobs, restart=True, ram=True)
    assert got.restart is not None
    note = "" if jobs >= full else f"quick: {jobs:,} of {full:,} jobs; "
    note += f"tunasync design: {TUNASYNC_RATE} starts/s"
    if got.failures:
        note += f"; {got.failures} runs FAILED"
    rows = [
        judged(
            Row(
                "4 scheduler",
                f"{jobs:,} due jobs `true`, concurrent={CONCURRENT}: starts/s",
                got.worker,
                got.plain,
                "starts/s",
                target="≥ 0.5×",
                note=note,
            ),
            at_least=0.5,
        ),
        Row(
            "4 scheduler",
            f"restart 2 days later, {jobs:,} jobs overdue: starts/s",
            got.restart,
            got.plain,
            "starts/s",
            note="jobs and directories known (first start above: all new); not judged",
        ),
    ]
    if got.ram is not None and got.inode_disk is not None and got.inode_ram is not None:
        rows += [
            Row(
                "4 scheduler",
                f"the same {jobs:,} jobs, job files on tmpfs: starts/s",
                got.ram,
                got.plain,
                "starts/s",
                note=f"another worker, its log and working dirs in {RAM_DIR}; not judged",
            ),
            Row(
                "4 scheduler",
                "a new inode on the job files' disk vs on tmpfs: CPU µs",
                got.inode_disk * 1e6,
                got.inode_ram * 1e6,
                "µs",
                note=f"mkdir × {INODES}, timed just before the workers; a first run makes "
                "4 inodes, a later one 2; the plain loop none",
                higher_is_better=False,
            ),
        ]
    rows.append(
        Row(
            "4 scheduler",
            "starts/s vs tunasync's 1 per 5 s",
            got.worker,
            TUNASYNC_RATE,
            "starts/s",
            target="≥ 100 starts/s",
            passed=got.worker >= 100 and not got.failures,
        )
    )
    return rows
