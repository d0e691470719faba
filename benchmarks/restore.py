"""Scenario 5: a worker's restore time must not grow with the length of its history.

Two workers with the same jobs: one with 1 past run per job, one with many.  Each history is
written fast (asynchronous publishes), then its last events go through a real
:class:`~mirrorbus.worker.outbox.Outbox` that writes the snapshot, and a short tail follows
(events after the snapshot, as after an unclean stop).  Figure: the median time of
:func:`mirrorbus.worker.restore.restore` for the long history; baseline: the same for the
short one.  Target: ratio ≤ 1.5.
"""

from __future__ import annotations

import time

import anyio

from benchmarks.harness import (
    BenchEvent,
    Row,
    Stack,
    configured,
    judged,
    median,
    one_run,
    publish_all,
)
from mirrorbus.bus import Bus
from mirrorbus.clock import SystemClock
from mirrorbus.events import JobState, evolve
from mirrorbus.worker.outbox import Outbox
from mirrorbus.worker.restore import Restored, restore

SNAPSHOT_EVERY = 200
TAIL = 50
REPEAT = 5


async def write_history(bus: Bus, worker: str, jobs: int, runs: int) -> int:
    """``runs`` runs of ``jobs`` jobs, snapshot by the Outbox, then a tail; return events."""
    states: dict[str, JobState] = {}
    s = bus.subjects
    total = 0

    def fold_into(events: list[BenchEvent]) -> None:
        for ev in events:
            states[ev.job] = evolve(states.get(ev.job), ev)

    chunks: list[list[BenchEvent]] = [configured(worker, jobs)]
    for r in range(runs):
        chunks.append(one_run(worker, jobs, r))
        if len(chunks) > 1:
            head = chunks.pop(0)
            total += await publish_all(bus, head)
            fold_into(head)
    last = chunks.pop()
    total += await publish_all(bus, last[:-SNAPSHOT_EVERY])
    fold_into(last[:-SNAPSHOT_EVERY])
    outbox = Outbox(
        bus,
        worker,
        SystemClock(),
        acked_states=states,
        acked_seq=await bus.last_sequence(),
        snapshot_every=SNAPSHOT_EVERY,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        for ev in last[-SNAPSHOT_EVERY:]:
            outbox.put(s.job_events(worker, ev.job), ev)
        if not await outbox.flush(120):
            raise TimeoutError("outbox did not flush")
        await outbox.snapshot()
        tg.cancel_scope.cancel()
    total += SNAPSHOT_EVERY
    tail = one_run(worker, jobs, runs)[:TAIL]
    total += await publish_all(bus, tail)
    return total


async def time_restore(bus: Bus, worker: str) -> tuple[float, Restored]:
    started = time.perf_counter()
    restored = await restore(bus, worker)
    return time.perf_counter() - started, restored


async def restore_times(st: Stack, jobs: int, runs: tuple[int, int]) -> tuple[float, float, str]:
    """(median restore s with runs[1], with runs[0], detail) on a fresh stream."""
    await st.ensure_streams()
    names = ("restore1", "restoreN")
    sizes: list[int] = []
    for name, r in zip(names, runs, strict=True):
        bus = await st.bus("worker", name)
        try:
            sizes.append(await write_history(bus, name, jobs, r))
        finally:
            await bus.close()
    times: dict[str, list[float]] = {n: [] for n in names}
    folded: dict[str, int] = {}
    buses = {n: await st.bus("worker", n) for n in names}
    try:
        for _ in range(REPEAT):
            for n in names:
                seconds, restored = await time_restore(buses[n], n)
                times[n].append(seconds)
                folded[n] = restored.folded
                if len(restored.states) != jobs:
                    raise RuntimeError(f"{n}: restored {len(restored.states)} of {jobs} jobs")
    finally:
        for bus in buses.values():
            await bus.close()
    detail = (
        f"{sizes[0]:,} vs {sizes[1]:,} events of history; folded {folded[names[0]]} vs "
        f"{folded[names[1]]} after the snapshot; median of {REPEAT}"
    )
    return median(times[names[1]]), median(times[names[0]]), detail


async def restore_row(st: Stack, jobs: int, runs: int, full: tuple[int, int]) -> Row:
    long_s, short_s, detail = await restore_times(st, jobs, (1, runs))
    note = detail
    if (jobs, runs) != full:
        note = f"quick: {jobs:,} jobs × {runs} runs (full {full[0]:,} × {full[1]}); " + detail
    return judged(
        Row(
            "5 restore",
            f"restore {jobs:,} jobs, {runs} runs each vs 1 run each",
            long_s,
            short_s,
            "s",
            target="≤ 1.5×",
            note=note,
            higher_is_better=False,
        ),
        at_most=1.5,
    )
