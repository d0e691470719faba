"""Worker restore against a real server: it equals the fold of the whole history, and its
cost (events folded on top of the snapshot) does not grow with the length of history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from mirrorbus.bus import Bus, connect, settings_from_paths
from mirrorbus.clock import SystemClock, new_id
from mirrorbus.errors import PermissionDenied
from mirrorbus.events import (
    AttemptStarted,
    JobEvent,
    JobState,
    RunStarted,
    RunSucceeded,
    Subjects,
    encode,
    fold,
)
from mirrorbus.worker.outbox import Outbox
from mirrorbus.worker.restore import restore

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _bus(server, role: str, name: str | None = None) -> Bus:  # type: ignore[no-untyped-def]
    stem = f"worker-{name}" if role == "worker" else role
    inbox = Subjects.worker_inbox(name) if name else None
    return await connect(
        settings_from_paths([server.url], server.pki_dir, stem, inbox_prefix=inbox), reconnect=False
    )


def _runs(worker: str, jobs: int, runs: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    for r in range(runs):
        for j in range(jobs):
            at = T0 + timedelta(minutes=r, seconds=j)
            run_id = new_id()
            common = {"worker": worker, "job": f"job{j}", "run_id": run_id}
            events += [
                RunStarted(id=new_id(), at=at, **common),
                AttemptStarted(id=new_id(), at=at, attempt=1, **common),
                RunSucceeded(
                    id=new_id(), at=at + timedelta(seconds=30), attempt=1, size=f"{r}K", **common
                ),
            ]
    return events


async def _append_all(
    bus: Bus,
    worker: str,
    events: list[JobEvent],
    states: dict[str, JobState],
    seq: int,
    snapshot_every: int,
) -> Outbox:
    outbox = Outbox(
        bus,
        worker,
        SystemClock(),
        acked_states=states,
        acked_seq=seq,
        snapshot_every=snapshot_every,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        for event in events:
            outbox.put(bus.subjects.job_events(worker, event.job), event)
        assert await outbox.flush(60)
        await outbox.snapshot()
        tg.cancel_scope.cancel()
    return outbox


async def test_restore_equals_the_fold_and_does_not_grow_with_history(nats_server) -> None:  # type: ignore[no-untyped-def]
    manager = await _bus(nats_server, "manager")
    try:
        await manager.ensure_streams()
    finally:
        await manager.close()
    bus = await _bus(nats_server, "worker", "w1")
    try:
        short = _runs("w1", jobs=5, runs=2)
        await _append_all(bus, "w1", short, {}, 0, snapshot_every=20)
        first = await restore(bus, "w1")
        assert first.states == fold(short)

        long = _runs("w1", jobs=5, runs=40)  # 600 more events
        await _append_all(bus, "w1", long, first.states, first.seq, snapshot_every=20)
        # A few events after the last snapshot, as after an unclean stop.
        tail = _runs("w1", jobs=1, runs=2)
        for event in tail:
            await bus.append(bus.subjects.job_events("w1", event.job), encode(event), event.id)
        second = await restore(bus, "w1")
        assert second.states == fold(short + long + tail)
        assert second.folded == len(tail)  # not the 636 events of history
        assert second.seq == await bus.last_sequence()
    finally:
        await bus.close()


async def test_another_worker_cannot_restore_from_w1s_events(nats_server) -> None:  # type: ignore[no-untyped-def]
    manager = await _bus(nats_server, "manager")
    try:
        await manager.ensure_streams()
    finally:
        await manager.close()
    w1 = await _bus(nats_server, "worker", "w1")
    try:
        await _append_all(w1, "w1", _runs("w1", jobs=2, runs=1), {}, 0, snapshot_every=1)
    finally:
        await w1.close()
    w2 = await _bus(nats_server, "worker", "w2")
    try:
        restored = await restore(w2, "w2")
        assert restored.states == {}
        with pytest.raises(PermissionDenied, match="refused"):
            await restore(w2, "w1")
    finally:
        await w2.close()
