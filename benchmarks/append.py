"""Scenario 2: a worker's acknowledged, de-duplicated appends through the real ``Outbox``.

Figure: events put into :class:`mirrorbus.worker.outbox.Outbox` and flushed (every one
acknowledged, in order, each with its id as ``Nats-Msg-Id``).  Baseline: the same payloads
(with fresh ids, so neither run de-duplicates against the other) sent with raw asynchronous
JetStream publishes (``js.publish_async`` + wait for every ack) on the same connection.
"""

from __future__ import annotations

import anyio

from benchmarks.harness import BenchEvent, Row, Stack, bounded, judged, one_run, publish_all, timed
from mirrorbus.clock import SystemClock
from mirrorbus.events import Subjects
from mirrorbus.worker.outbox import Outbox

WORKER = "bench"


async def through_outbox(
    outbox: Outbox, subjects: Subjects, events: list[BenchEvent], timeout: float
) -> None:
    for event in events:
        outbox.put(subjects.job_events(event.worker, event.job), event)
    if not await outbox.flush(timeout):
        raise TimeoutError(f"outbox not flushed within {timeout:g}s ({outbox.pending} left)")


def _events(count: int) -> list[BenchEvent]:
    jobs = max(count // 4, 1)
    return one_run(WORKER, jobs, 0)[:count]


async def append(st: Stack, count: int) -> Row:
    await st.ensure_streams()
    bus = await st.bus("worker", WORKER)
    try:
        warm = _events(200)
        await publish_all(bus, warm)
        raw_events = _events(count)
        raw_s, _ = await timed(lambda: bounded(publish_all(bus, raw_events), 300, "raw"))
        box_events = _events(count)
        outbox = Outbox(
            bus, WORKER, SystemClock(), acked_states={}, acked_seq=await bus.last_sequence()
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.run)
            box_s, _ = await timed(lambda: through_outbox(outbox, bus.subjects, box_events, 600))
            tg.cancel_scope.cancel()
        stored = await bus.last_sequence()
        expected = len(warm) + len(raw_events) + len(box_events)
        if stored < expected:  # snapshots go to their own stream
            raise RuntimeError(f"stream holds {stored} events, expected {expected}")
    finally:
        await bus.close()
    row = Row(
        "2 append",
        f"{count:,} events via Outbox (acked, de-dup ids)",
        count / box_s,
        count / raw_s,
        "ev/s",
        target="≥ 0.7×",
        note="baseline: js.publish_async + wait",
    )
    return judged(row, at_least=0.7)
