"""Scenario 4: how fast a worker starts 10,000 due jobs with ``concurrent = 64``.

Figure: a real :class:`~mirrorbus.worker.service.Worker` (config written as TOML, jobs
running ``true``, all due at start) driven until every job has finished its run; starts per
second = jobs / time from the scheduler's start to the last run's end.  Baseline: the same
processes started in a plain loop, ``anyio.open_process`` + ``wait``, 64 at a time, with the
same child watcher as the worker, half of them before the worker's runs and half after.
tunasync's design starts at most one due job per 5 s tick: 0.2 starts/s.

The judged figure is the worker's first start, where every job is new: configured (an event
each), its log and working directories made, run once.  A second figure, not judged, starts
the same worker again with its clock two days later: every job overdue, nothing new, as when a
site's worker comes back after a long stop.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from benchmarks.harness import Row, Stack, judged, write_worker_config
from mirrorbus.bus import Bus
from mirrorbus.clock import Clock
from mirrorbus.events import AttemptFailed, Event, RunStarted, RunSucceeded
from mirrorbus.worker.config import load_worker_config
from mirrorbus.worker.process import use_pidfd_child_watcher
from mirrorbus.worker.service import Worker

WORKER = "sched"
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


class LaterClock:
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
    """Seconds to run ``true`` ``jobs`` times, ``concurrent`` at a time, with nothing else
    (child processes watched as the worker watches them: pid file descriptors)."""
    use_pidfd_child_watcher()
    limiter = anyio.CapacityLimiter(concurrent)

    async def one() -> None:
        async with limiter:
            process = await anyio.open_process(
                ["true"], stdin=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await process.wait()

    started = time.perf_counter()
    with anyio.fail_after(max(60.0, jobs / 20)):
        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(one)
    return time.perf_counter() - started


async def measure(
    st: Stack, jobs: int, *, restart: bool = False
) -> tuple[float, float, int, float | None]:
    """(worker starts/s, plain-loop starts/s, failed runs, restart starts/s) for ``jobs`` jobs.

    The worker's first start: every job new (configured, its directories made, run once).
    With ``restart``, the same worker is then started again two days later by its clock, so
    every job is overdue: the starts of a site whose worker was down, jobs and directories
    known.
    """
    await st.ensure_streams()
    root = st.root / f"sched-{jobs}"
    root.mkdir(parents=True, exist_ok=True)
    config = write_worker_config(root, WORKER, jobs, concurrent=CONCURRENT)
    timeout = max(120.0, jobs / 10)
    # The baseline in two halves, before and after the worker: a shared machine's speed
    # drifts over a minute, and then weighs on both figures alike.
    base_s = await plain_loop(jobs // 2)
    again_s: float | None = None
    bus = await st.bus("worker", WORKER)
    try:
        worker_s, failures = await run_worker(bus, config, jobs, timeout)
        if restart:
            again_s, more = await run_worker(bus, config, jobs, timeout, LaterClock(RESTART_AFTER))
            failures += more
    finally:
        await bus.close()
    base_s += await plain_loop(jobs - jobs // 2)
    return jobs / worker_s, jobs / base_s, failures, None if again_s is None else jobs / again_s


async def scheduler(st: Stack, jobs: int, full: int) -> tuple[list[Row], float, float]:
    rate, base, failures, again = await measure(st, jobs, restart=True)
    assert again is not None
    note = "" if jobs >= full else f"quick: {jobs:,} of {full:,} jobs; "
    note += f"tunasync design: {TUNASYNC_RATE} starts/s"
    if failures:
        note += f"; {failures} runs FAILED"
    rows = [
        judged(
            Row(
                "4 scheduler",
                f"{jobs:,} due jobs `true`, concurrent={CONCURRENT}: starts/s",
                rate,
                base,
                "starts/s",
                target="≥ 0.5×",
                note=note,
            ),
            at_least=0.5,
        ),
        Row(
            "4 scheduler",
            f"restart 2 days later, {jobs:,} jobs overdue: starts/s",
            again,
            base,
            "starts/s",
            note="jobs and directories known (first start above: all new); not judged",
        ),
        Row(
            "4 scheduler",
            "starts/s vs tunasync's 1 per 5 s",
            rate,
            TUNASYNC_RATE,
            "starts/s",
            target="≥ 100 starts/s",
            passed=rate >= 100 and not failures,
        ),
    ]
    return rows, rate, base
