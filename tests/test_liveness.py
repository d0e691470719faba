"""Liveness: workers heartbeat; one that vanishes without a word (SIGKILL) is shown offline
within a bounded time, and its jobs keep their last real status in the view."""

from __future__ import annotations

import time

from e2e import Site, alive, read_pid, wait_for
from test_e2e_worker import SLEEPING_JOB

from projections.status_view import HEARTBEAT_TIMEOUT


def test_a_vanished_worker_goes_offline_and_its_jobs_keep_their_status(site: Site) -> None:
    config = site.worker_config("w1", SLEEPING_JOB.format(name="long", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "long", lambda j: j.status == "syncing")
    pid = wait_for(lambda: read_pid(site.workdir("w1", "long") / "pid"), what="the job's pid")
    worker = wait_for(
        lambda: [w for w in site.view.workers() if w.last_heartbeat],
        15,
        "a heartbeat to reach the view",
    )[0]
    assert worker.online

    site.kill("worker")
    killed_at = time.monotonic()
    wait_for(
        lambda: not site.view.workers()[0].online,
        HEARTBEAT_TIMEOUT.total_seconds() + 15,
        "the worker to be shown offline",
    )
    assert time.monotonic() - killed_at <= HEARTBEAT_TIMEOUT.total_seconds() + 10
    assert site.job("w1", "long").status == "syncing"  # type: ignore[union-attr]

    shown = site.ctl("workers")
    assert shown.returncode == 0
    assert "offline" in shown.stdout.splitlines()[1]
    listed = site.ctl("list", "--all")
    assert "syncing (worker offline)" in listed.stdout.splitlines()[1]

    # Back: online again with its first heartbeat, the interrupted run closed.
    site.start_worker(config, key="worker")
    wait_for(lambda: site.view.workers()[0].online, 20, "the worker back online")
    site.wait_job(
        "w1",
        "long",
        lambda j: j.status == "syncing" and site.runs("w1", "long")[-1].error == "interrupted",
    )
    assert not alive(pid)  # the orphan of the killed worker was ended by the new one
