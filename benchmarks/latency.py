"""Scenario 3: control latency, command sent to answer visible in the view.

In-process (one event loop, three connections with their own certificates): a real
:class:`~mirrorbus.manager.service.Manager` on SQLite, a real
:class:`~mirrorbus.worker.service.Worker` and :class:`~mirrorbus.control.Control` as admin.
Each sample: ``Control.command("ping", ...)`` (which checks the target with the manager,
appends the command, waits for the worker's answer event), then wait until the answer's row
is in the view's ``commands`` table (woken by the manager's change notifications).
Baseline: a raw NATS request/reply round trip (admin to an echo responder) over the same TLS,
in the same process, taken in blocks that alternate with the commands' (:func:`round_trips`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
from nats.aio.msg import Msg

from benchmarks.harness import Row, Stack, judged, percentile, wait_until, write_worker_config
from mirrorbus.config.worker import load_worker_config
from mirrorbus.control import Control
from mirrorbus.manager.service import Manager
from mirrorbus.worker.service import Worker
from projections.status_view import StatusView

WORKER = "ctl"
ECHO_WORKER = "bench"
JOBS = 4
WARMUP = 20
BLOCK = 25
"""Samples of one kind taken back to back before the other kind's turn."""


class _Probe:
    """Reads the view's SQLite file directly (WAL: it sees each commit as it happens): the
    benchmark's instrument, kept off the path it measures.  One indexed lookup per look, on
    the event loop, costs microseconds; through the view (a pooled connection in a thread)
    it cost two thread hops per look, and many times more."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def has_command(self, cmd_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM commands WHERE cmd_id = ?", (cmd_id,)).fetchone()
        return row is not None

    def close(self) -> None:
        self._db.close()


async def visible(manager: Manager, probe: _Probe, cmd_id: str, timeout: float = 10.0) -> None:
    """Return once the answer to ``cmd_id`` is a row of the view (looked up once, then
    after each change notification of the manager)."""
    with anyio.fail_after(timeout):
        version = manager.changes.version
        while not probe.has_command(cmd_id):
            version = await manager.changes.wait(version)


@contextlib.asynccontextmanager
async def echo_pair(st: Stack) -> AsyncIterator[Callable[[], Awaitable[float]]]:
    """The baseline: an echo responder and a client (admin); yields a function that makes
    one raw request/reply round trip and returns its seconds.

    The responder has the certificate of a worker that is not running and answers on that
    worker's log subject, where nothing else listens: on the manager's ``api`` subjects the
    running manager would answer every echo too ("unknown query"), doubling its cost.
    """
    responder = await st.bus("worker", ECHO_WORKER)
    client = await st.bus("admin")
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        subject = st.subjects.logs(ECHO_WORKER)
        sub = await responder.nc.subscribe(subject, cb=echo)
        await responder.nc.flush()

        async def one() -> float:
            started = time.perf_counter()
            await client.nc.request(subject, b"ping", timeout=5)
            return time.perf_counter() - started

        yield one
        await sub.unsubscribe()
    finally:
        await client.close()
        await responder.close()


async def round_trips(st: Stack, count: int) -> tuple[list[float], list[float]]:
    """(raw round trips, commands), taken in alternating blocks of :data:`BLOCK`: the
    machine is shared, and a baseline measured a minute before the commands could be far off
    (see BENCHMARKS.md).  The raw round trips run beside the idle services."""
    config = write_worker_config(st.root, WORKER, JOBS, concurrent=4)
    cfg = await anyio.to_thread.run_sync(load_worker_config, config)
    mbus = await st.bus("manager")
    wbus = await st.bus("worker", WORKER)
    abus = await st.bus("admin")
    view = await anyio.to_thread.run_sync(StatusView, f"sqlite:///{st.root / 'view.db'}")
    probe = _Probe(st.root / "view.db")
    raw: list[float] = []
    cmd: list[float] = []
    try:
        manager = Manager(mbus, view)
        worker = Worker(cfg, wbus)
        control = Control(abus)
        # The echo pair outlives the task group, whose scope is cancelled at the end: its
        # connections must be closed outside that cancelled scope.
        async with echo_pair(st) as raw_round_trip, anyio.create_task_group() as tg:
            await tg.start(manager.run)
            async with anyio.create_task_group() as workers:
                await workers.start(worker.run)
                await wait_until(
                    lambda: len(view.jobs(WORKER)) == JOBS, 30, "the jobs in the view", 0.05
                )
                n = 0
                while len(cmd) < count + WARMUP:
                    # Blocks in turn, each back to back (a process that waits between
                    # samples is woken slowly on this VM, and both kinds would measure that);
                    # a block's first sample is dropped: it carries the other kind's tail.
                    for k in range(BLOCK + 1):
                        took = await raw_round_trip()
                        if k:
                            raw.append(took)
                    for k in range(BLOCK + 1):
                        job = f"job{n % JOBS:05d}"
                        n += 1
                        started = time.perf_counter()
                        answer = await control.command("ping", WORKER, job, timeout=10)
                        await visible(manager, probe, answer.cmd_id)
                        if k:
                            cmd.append(time.perf_counter() - started)
                worker.stop("benchmark done")
            tg.cancel_scope.cancel()
    finally:
        probe.close()
        view.close()
        for bus in (abus, wbus, mbus):
            await bus.close()
    return raw[WARMUP:], cmd[WARMUP:]


async def latency(st: Stack, count: int, full: int) -> list[Row]:
    await st.ensure_streams()
    raw, cmd = await round_trips(st, count)
    note = "in-process manager+worker+ctl, SQLite; baseline: raw NATS request/reply"
    if count < full:
        note += f"; quick: {count} of {full} commands"
    rows = []
    for p, limit in ((50, 10.0), (99, 20.0)):
        rows.append(
            judged(
                Row(
                    "3 control",
                    f"ping ctl→worker→view, p{p} of {count}",
                    percentile(cmd, p) * 1000,
                    percentile(raw, p) * 1000,
                    "ms",
                    target=f"≤ {limit:g}×",
                    note=note,
                    higher_is_better=False,
                ),
                at_most=limit,
            )
        )
    return rows
