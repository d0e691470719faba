"""A log with a maximum age: once old events are gone, a worker restores from its snapshot
and a rebuilt view is seeded from the snapshots, and both still agree with what happened.

The age limit is `[streams] max_age_days` (checked on the stream below); here old events are
removed by a message-count limit set for a moment with the manager's certificate, which drops
the oldest events as the age limit does, without waiting for days (the streams deny purging
to everyone)."""

from __future__ import annotations

from pathlib import Path

import anyio
from e2e import Site, count_lines, wait_for
from test_e2e_worker import COUNTING_JOB

from mirrorbus.bus import StreamSettings, connect
from projections import tables
from projections.status_view import StatusView


def _admin(site: Site, action, role: str = "admin"):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        bus = await connect(site.instance.bus_settings(role), reconnect=False)
        try:
            return await action(bus)
        finally:
            await bus.close()

    return anyio.run(main, backend="asyncio")


def _jobs(view: StatusView) -> list[tuple[object, ...]]:
    """The jobs table without the bookkeeping column `seq` (which event last touched a row)."""
    seq = [c.name for c in tables.jobs.columns].index("seq")
    return [row[:seq] + row[seq + 1 :] for row in view.dump()["jobs"]]


def test_restore_and_rebuild_after_old_events_are_gone(site: Site, tmp_path: Path) -> None:
    config = site.worker_config(
        "w1",
        COUNTING_JOB.format(name="quick", interval=0.02)
        + COUNTING_JOB.format(name="slow", interval=60),
    )
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "slow", lambda j: j.status == "success")
    wait_for(lambda: count_lines(site.workdir("w1", "quick") / "runs") >= 3, 20, "quick runs")
    assert site.stop("worker") == 0  # writes a snapshot of everything so far
    snap_seq = _admin(site, lambda bus: bus.last_sequence())

    # More events after the snapshot, and an unclean stop that writes none.
    site.start_worker(config, key="worker")
    wait_for(lambda: count_lines(site.workdir("w1", "quick") / "runs") >= 5, 20, "more runs")
    site.kill("worker")
    last = _admin(site, lambda bus: bus.last_sequence())
    assert last > snap_seq + 3

    # A limit drops the oldest events (here: every one before the snapshot's third-last).
    async def drop_oldest(bus):  # type: ignore[no-untyped-def]
        config = (await bus.js.stream_info(bus.subjects.evt_stream)).config
        config.max_msgs = last - (snap_seq - 2) + 1
        await bus.js.update_stream(config)
        config.max_msgs = -1
        await bus.js.update_stream(config)
        return (await bus.js.stream_info(bus.subjects.evt_stream)).state.first_seq

    assert _admin(site, drop_oldest, "manager") == snap_seq - 2
    wait_for(lambda: site.view.position() == last, 20, "the live view to catch up")

    rebuilt = tmp_path / "rebuilt.db"
    out = site.cli(
        "manager", "rebuild", "--state-dir", str(site.root), "--into", f"sqlite:///{rebuilt}"
    )
    assert out.returncode == 0, out.stderr
    other = StatusView(f"sqlite:///{rebuilt}")
    try:
        assert _jobs(other) == _jobs(site.view)  # the same jobs, from snapshot + later events
        assert other.position() == last
    finally:
        other.close()

    # The worker restores from the same snapshot: `slow` keeps its success, is not re-run.
    slow_before = site.job("w1", "slow")
    site.start_worker(config, key="worker")
    wait_for(lambda: count_lines(site.workdir("w1", "quick") / "runs") >= 6, 20, "quick again")
    slow_after = site.job("w1", "slow")
    assert slow_after is not None and slow_before is not None
    assert slow_after.last_update == slow_before.last_update
    assert count_lines(site.workdir("w1", "slow") / "runs") == 1


def test_max_age_reaches_the_stream(site: Site) -> None:
    async def apply(bus):  # type: ignore[no-untyped-def]
        await bus.ensure_streams(StreamSettings(max_age=7 * 86400))
        return (await bus.js.stream_info(bus.subjects.evt_stream)).config.max_age

    assert _admin(site, apply, "manager") == 7 * 86400
