"""Answers of any size: a query whose answer is over the server's max_payload is answered in
parts and put together by the client; the manager never ends on an honest big answer.

Against a real nats-server (max_payload 1 MiB), the real query service on a SQLite view and
the ctl's client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from conftest import RunningServer

from mirrorbus.bus import Bus, connect, settings_from_paths
from mirrorbus.control import Control
from mirrorbus.events import JobConfigured, Subjects, WorkerStarted, encode
from mirrorbus.manager.queries import QueryService
from projections.status_view import Entry, StatusView

pytestmark = pytest.mark.anyio
S = Subjects()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _bus(server: RunningServer, role: str) -> Bus:
    return await connect(settings_from_paths([server.url], server.pki_dir, role), reconnect=False)


def _view(path: Path, jobs: int, upstream_chars: int) -> StatusView:
    view = StatusView(f"sqlite:///{path}")
    entries: list[Entry] = [
        (1, S.worker_events("w1"), encode(WorkerStarted(id="s", at=T0, worker="w1")))
    ]
    for n in range(jobs):
        job = f"job{n:05d}"
        upstream = f"rsync://mirror.example.org/{job}/" + "u" * upstream_chars
        event = JobConfigured(id=f"c{n}", at=T0, worker="w1", job=job, upstream=upstream)
        entries.append((n + 2, S.job_events("w1", job), encode(event)))
    view.apply(entries)
    return view


@pytest.mark.parametrize(
    ("jobs", "upstream_chars"),
    [(5000, 300), (20, 60_000)],
    ids=["5000-jobs", "20-jobs-60KB-upstreams"],
)
async def test_a_jobs_answer_over_max_payload_comes_whole_and_the_manager_goes_on(
    nats_server: RunningServer, tmp_path: Path, jobs: int, upstream_chars: int
) -> None:
    view = _view(tmp_path / "view.db", jobs, upstream_chars)
    manager = await _bus(nats_server, "manager")
    admin = await _bus(nats_server, "admin")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(QueryService(manager, view).run)
            control = Control(admin)
            listed = await control.jobs(timeout=30)
            assert len(listed) == jobs
            assert listed == view.jobs()  # every field, in order
            assert sum(len(j.upstream) for j in listed) > manager.nc.max_payload
            # The query service is still there, and answers again (whole, again).
            assert len(await control.jobs("w1", timeout=30)) == jobs
            assert [w.name for w in await control.workers()] == ["w1"]
            tg.cancel_scope.cancel()
    finally:
        await admin.close()
        await manager.close()
        view.close()
