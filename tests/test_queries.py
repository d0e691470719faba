"""The manager's query service over a real nats-server: the command-target check.

Every command asks the manager whether its worker and job exist before it is appended.  The
answer comes from one or two indexed lookups; a job once confirmed is answered from memory
(job rows are never deleted), while anything unconfirmed is always looked up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from conftest import RunningServer
from sqlalchemy import text

from mirrorbus.bus import Bus, connect, settings_from_paths
from mirrorbus.control import Control
from mirrorbus.errors import BusError
from mirrorbus.events import JobConfigured, Subjects, WorkerStarted, encode
from mirrorbus.events.wire import Target, TargetQuery
from mirrorbus.manager.queries import QueryService
from projections.status_view import StatusView

pytestmark = pytest.mark.anyio
S = Subjects()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _bus(server: RunningServer, role: str) -> Bus:
    settings = settings_from_paths([server.url], server.pki_dir, role, name=f"test-{role}")
    return await connect(settings, reconnect=False)


def _view_with_jobs(path: Path) -> StatusView:
    view = StatusView(f"sqlite:///{path}")
    started = WorkerStarted(id="e1", at=T0, worker="w1", jobs=("debian", "ubuntu"))
    jobs = [
        JobConfigured(id=f"e{n}", at=T0, worker="w1", job=job, upstream="u")
        for n, job in enumerate(("debian", "ubuntu"), 2)
    ]
    view.apply(
        [(1, S.worker_events("w1"), encode(started))]
        + [(n, S.job_events("w1", e.job), encode(e)) for n, e in enumerate(jobs, 2)]
    )
    return view


async def test_a_confirmed_target_is_answered_without_the_view(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    view = _view_with_jobs(tmp_path / "view.db")
    manager = await _bus(nats_server, "manager")
    admin = await _bus(nats_server, "admin")
    control = Control(admin)

    async def target(worker: str, job: str | None) -> Target:
        query = TargetQuery(worker=worker, job=job)
        return await control._query("target", query, Target, 5.0)  # as ctl asks it

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(QueryService(manager, view).run)
            assert await target("w1", "debian") == Target(worker=True, job=True)
            assert await target("w1", None) == Target(worker=True, job=False)
            assert await target("w1", "nosuch") == Target(worker=True, job=False)
            assert await target("w9", "debian") == Target(worker=False, job=False, workers=["w1"])

            # The view cannot be read any more: the confirmed job is still answered, an
            # unconfirmed one is looked up and fails with the reason.
            with view.engine.begin() as conn:
                conn.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
            assert await target("w1", "debian") == Target(worker=True, job=True)
            with pytest.raises(BusError, match="the manager refused target: the status view"):
                await target("w1", "ubuntu")
            tg.cancel_scope.cancel()
    finally:
        await admin.close()
        await manager.close()
        view.close()
