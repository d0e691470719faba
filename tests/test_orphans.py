"""No orphans: a stopped, timed-out or shut-down job leaves no process behind (end to end).

A real worker, manager and nats-server (tests/e2e.py).  The job script starts a background
child (``sleep 300 &``, in the job's process group), records its pid, and sleeps in the
foreground.  Without cgroups the worker ends the job's process group; that is enough for
children that stay in the group.  With ``[cgroup] enable`` the script also starts a daemon
with ``setsid`` (its own session and process group, beyond the reach of any group signal): the
cgroup hook's ``post_exec`` must kill it too, and remove the job's cgroup.

The three ways a run ends early: ``ctl stop``, ``timeout = 1``, and SIGTERM to the worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import Site, alive, read_pid, wait_for
from test_hooks_system import TestGroup, cgroup_group  # noqa: F401 - a fixture

JOB_SCRIPT = """\
#!/bin/sh
# The job of test_orphans: children that must not outlive it.
cd "$TUNASYNC_WORKING_DIR"
sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > child.pid
if [ "$1" = daemon ]; then
    setsid sleep 300 </dev/null >/dev/null 2>&1 &
    echo $! > daemon.pid
fi
echo $$ > main.pid
sleep 300
"""

Mode = str  # "group" (process group only) or "cgroup"


def _config(site: Site, mode: Mode, group: TestGroup | None, timeout: int = 0) -> Path:
    script = site.root / "job.sh"
    script.write_text(JOB_SCRIPT)
    arg = " daemon" if mode == "cgroup" else ""
    cgroup = f'[cgroup]\nenable = true\ngroup = "{group.name}"\n\n' if group else ""
    return site.worker_config(
        "w1",
        cgroup
        + f"""
[[mirrors]]
name = "job"
provider = "command"
command = "/bin/sh {script}{arg}"
timeout = {timeout}
""",
    )


def _wait_running(site: Site, mode: Mode) -> list[int]:
    """The pids of the job (main, child, and daemon in cgroup mode) once all are written."""
    workdir = site.workdir("w1", "job")
    names = ["main", "child"] + (["daemon"] if mode == "cgroup" else [])

    def pids() -> list[int] | None:
        found = [read_pid(workdir / f"{n}.pid") for n in names]
        return None if None in found else [p for p in found if p is not None]

    running = wait_for(pids, what="the job's processes")
    assert all(alive(p) for p in running)
    return running


def _assert_all_gone(pids: list[int], group: TestGroup | None) -> None:
    wait_for(lambda: not any(alive(p) for p in pids), 10, "every process of the job to be gone")
    if group is not None:
        dirs = group.job_dirs("job")
        wait_for(lambda: not any(d.exists() for d in dirs), 10, f"{dirs} to be removed")


def _group(mode: Mode, request: pytest.FixtureRequest) -> TestGroup | None:
    return request.getfixturevalue("cgroup_group") if mode == "cgroup" else None


MODES = ["group", "cgroup"]


@pytest.mark.parametrize("mode", MODES)
def test_stop_leaves_no_process(site: Site, mode: Mode, request: pytest.FixtureRequest) -> None:
    group = _group(mode, request)
    site.start_manager()
    site.start_worker(_config(site, mode, group))
    pids = _wait_running(site, mode)
    stopped = site.ctl("stop", "-w", "w1", "job")
    assert stopped.returncode == 0, stopped.stderr
    site.wait_job("w1", "job", lambda j: j.status == "paused")
    _assert_all_gone(pids, group)
    assert site.runs("w1", "job")[0].error == "killed by manager"


@pytest.mark.parametrize("mode", MODES)
def test_timeout_leaves_no_process(site: Site, mode: Mode, request: pytest.FixtureRequest) -> None:
    group = _group(mode, request)
    site.start_manager()
    site.start_worker(_config(site, mode, group, timeout=1))
    pids = _wait_running(site, mode)
    state = site.wait_job("w1", "job", lambda j: j.status == "failed")
    assert state.error_msg == "timeout after 1s"
    _assert_all_gone(pids, group)


@pytest.mark.parametrize("mode", MODES)
def test_worker_shutdown_leaves_no_process(
    site: Site, mode: Mode, request: pytest.FixtureRequest
) -> None:
    group = _group(mode, request)
    site.start_manager()
    site.start_worker(_config(site, mode, group), key="worker")
    pids = _wait_running(site, mode)
    assert site.stop("worker") == 0  # SIGTERM, as a service manager stops it
    _assert_all_gone(pids, group)
    state = site.wait_job("w1", "job", lambda j: j.status == "failed")
    assert state.error_msg == "killed by worker shutdown"
