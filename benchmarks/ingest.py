"""Scenarios 1 and 6: catching the SQLite status view up from events already in the stream.

Figure: :func:`mirrorbus.manager.projector.catch_up` into a fresh SQLite view (decode, fold,
upsert, position in the same transaction), what ``mirrorbus manager rebuild`` runs.  Baseline:
the same consumer reading the same events and decoding each, with no database: the limit the
view could reach; read once before the view and once after.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from benchmarks.harness import (
    Row,
    Stack,
    bounded,
    fetch_and_decode,
    history,
    judged,
    publish_all,
    timed,
)
from mirrorbus.manager.projector import catch_up
from projections.status_view import StatusView

WORKER = "ingest"
JOBS = 10_000


async def prepare(st: Stack, events: int) -> int:
    """Put ``events`` job events of 10,000 jobs into the stream; return the last sequence."""
    await st.ensure_streams()
    bus = await st.bus("worker", WORKER)
    try:
        for chunk in history(WORKER, JOBS, events):
            await publish_all(bus, chunk)
        return await bus.last_sequence()
    finally:
        await bus.close()


async def measure(st: Stack, events: int, db: Path) -> tuple[float, float]:
    """(view events/s, baseline events/s) over the ``events`` in the stream.  The baseline
    reads them once before the view and once after, and counts the mean: a shared machine's
    speed drifts over a minute, and then weighs on both figures alike."""
    bus = await st.bus("manager")

    async def baseline() -> float:
        seconds, seen = await timed(lambda: bounded(fetch_and_decode(bus, events), 600, "fetch"))
        assert seen == events, f"baseline read {seen} of {events} events"
        return seconds

    try:
        base_s = await baseline()
        view = await anyio.to_thread.run_sync(StatusView, f"sqlite:///{db}")
        try:
            view_s, position = await timed(lambda: bounded(catch_up(bus, view), 1200, "catch_up"))
            assert position == events, f"catch_up stopped at {position} of {events}"
        finally:
            view.close()
        base_s = (base_s + await baseline()) / 2
    finally:
        await bus.close()
    return events / view_s, events / base_s


async def ingest(st: Stack, events: int, full: int) -> Row:
    last = await prepare(st, events)
    view_rate, base_rate = await measure(st, last, st.root / "view.db")
    row = Row(
        "1 ingest",
        f"{last:,} job events caught up into SQLite",
        view_rate,
        base_rate,
        "ev/s",
        target="≥ 0.6×",
        note="" if events >= full else f"quick: {events:,} of {full:,} events",
    )
    return judged(row, at_least=0.6)


async def rebuild(st: Stack, events: int) -> Row:
    last = await prepare(st, events)
    view_rate, base_rate = await measure(st, last, st.root / "rebuilt.db")
    return Row(
        "6 rebuild",
        f"view rebuilt from {last:,} events",
        view_rate,
        base_rate,
        "ev/s",
        note="baseline: fetch + decode only",
    )
