"""End to end: nothing is forgotten across restarts.

After a worker restart, paused, disabled and recently succeeded jobs keep their state and a run
cut off by a crash is closed as "interrupted" and run again; events published while the manager
is down all reach the view once it is back, none twice; a rebuild gives an identical view.
"""

from __future__ import annotations

from pathlib import Path

from e2e import Site, alive, count_lines, read_pid, wait_for
from test_e2e_worker import COUNTING_JOB, SLEEPING_JOB


def test_worker_restart_restores_every_job(site: Site) -> None:
    jobs = (
        COUNTING_JOB.format(name="done", interval=60)
        + COUNTING_JOB.format(name="held", interval=60)
        + COUNTING_JOB.format(name="off", interval=60)
        + SLEEPING_JOB.format(name="cut", interval=60)
    )
    config = site.worker_config("w1", jobs)
    site.start_manager()
    site.start_worker(config, key="worker")
    for name in ("done", "held", "off"):
        site.wait_job("w1", name, lambda j: j.status == "success")
    assert site.ctl("stop", "-w", "w1", "held").returncode == 0
    assert site.ctl("disable", "-w", "w1", "off").returncode == 0
    site.wait_job("w1", "held", lambda j: j.status == "paused")
    site.wait_job("w1", "off", lambda j: j.status == "disabled")
    site.wait_job("w1", "cut", lambda j: j.status == "syncing")
    cut_pid = wait_for(lambda: read_pid(site.workdir("w1", "cut") / "pid"), what="cut's pid")
    done_before = site.job("w1", "done")

    # The worker dies without a chance to clean up, in the middle of `cut`'s sync: its job
    # process lives on, until the restarted worker ends what is left of the cut-off run.
    site.kill("worker")
    assert alive(cut_pid)
    site.start_worker(config, key="worker")
    wait_for(lambda: not alive(cut_pid), 15, "the orphan of the interrupted run to be ended")

    site.wait_job(
        "w1",
        "cut",
        lambda j: (
            j.status in ("syncing", "success") and j.run_id != site.runs("w1", "cut")[-1].run_id
        ),
        what="cut re-run",
    )
    interrupted = site.runs("w1", "cut")[-1]  # the oldest run
    assert (interrupted.result, interrupted.error) == ("failed", "interrupted")
    assert wait_for(
        lambda: (p := read_pid(site.workdir("w1", "cut") / "pid")) != cut_pid and p and alive(p),
        what="cut's new sync",
    )

    assert site.job("w1", "held").status == "paused"  # type: ignore[union-attr]
    assert site.job("w1", "off").status == "disabled"  # type: ignore[union-attr]
    # Succeeded a moment ago with a 60-minute interval: not run again, same schedule.
    done_after = site.job("w1", "done")
    assert done_after is not None and done_before is not None
    assert done_after.last_update == done_before.last_update
    assert done_after.next_schedule == done_before.next_schedule
    assert count_lines(site.workdir("w1", "done") / "runs") == 1
    assert count_lines(site.workdir("w1", "held") / "runs") == 1
    assert count_lines(site.workdir("w1", "off") / "runs") == 1

    # A clean stop ends the running sync and records it.
    new_pid = read_pid(site.workdir("w1", "cut") / "pid")
    assert site.stop("worker") == 0
    assert new_pid is not None and not alive(new_pid)
    site.wait_job(
        "w1", "cut", lambda j: j.status == "failed" and j.error_msg == "killed by worker shutdown"
    )
    workers = site.view.workers()
    assert [(w.name, w.online) for w in workers] == [("w1", False)]


def test_manager_catches_up_once_and_rebuild_is_identical(site: Site, tmp_path: Path) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    runs_file = site.workdir("w1", "tick") / "runs"
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "tick", lambda j: j.status == "success")
    # The view may show the run before the manager has finished starting (and handles
    # SIGTERM): the clean stop below is the ready manager's.
    wait_for(lambda: "manager ready" in site.output("manager"), 30, "the manager ready")

    assert site.stop("manager") == 0
    seen = count_lines(runs_file)
    wait_for(lambda: count_lines(runs_file) >= seen + 4, 30, "runs while the manager is down")
    assert site.stop("worker") == 0  # settle: every run is closed and its events stored
    total = count_lines(runs_file)

    site.start_manager()
    stopped = wait_for(
        lambda: [w for w in site.view.workers() if not w.online],
        what="the worker's stop to reach the view",
    )
    assert stopped[0].name == "w1"
    runs = site.runs("w1", "tick")
    assert len(runs) == total  # every run, none twice
    assert len({r.run_id for r in runs}) == total
    assert all(r.result == "success" for r in runs[1:])

    assert site.rebuild(tmp_path / "rebuilt.db") == site.view.dump()
