"""exec_on_success / exec_on_failure hooks, end to end in a real worker (docs/tunasync.md §6.5).

Order: hooks attach as exec_on_success, _extra, exec_on_failure, _extra and post-* phases run
in reverse, so ``*_extra`` commands run before the base list and a list runs last to first.
Hooks see ``TUNASYNC_*`` and ``TUNASYNC_JOB_EXIT_STATUS``; a failing hook fails the run.
"""

from __future__ import annotations

from pathlib import Path

from e2e import Site, wait_for


def _record(out: Path, tag: str) -> str:
    return (
        f"'/bin/sh -c \"echo {tag} $TUNASYNC_MIRROR_NAME $TUNASYNC_JOB_EXIT_STATUS "
        f"$(basename $TUNASYNC_LOG_FILE) >> {out}\"'"
    )


def test_exec_hooks_run_in_tunasyncs_order_with_the_exit_status(site: Site) -> None:
    out = site.root / "hooks.txt"
    jobs = f"""
[[mirrors]]
name = "good"
provider = "command"
command = "/bin/true"
exec_on_success = [{_record(out, "s1")}, {_record(out, "s2")}]
exec_on_success_extra = [{_record(out, "sx")}]
exec_on_failure = [{_record(out, "f1")}]

[[mirrors]]
name = "bad"
provider = "command"
command = "/bin/false"
retry = 2
exec_on_failure = [{_record(out, "f1")}]
exec_on_failure_extra = [{_record(out, "fx")}]
exec_on_success = [{_record(out, "s1")}]
"""
    config = site.worker_config("w1", jobs, concurrent=1)
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "good", lambda j: j.status == "success")
    site.wait_job("w1", "bad", lambda j: j.status == "failed" and j.attempt == 2)
    lines = wait_for(
        lambda: (t := out.read_text().splitlines()) and len(t) >= 7 and t, what="seven hook lines"
    )
    good = [line.rsplit(" ", 1)[0] for line in lines if " good " in line]
    bad = [line.rsplit(" ", 1)[0] for line in lines if " bad " in line]
    assert good == ["sx good success", "s2 good success", "s1 good success"]
    assert bad == ["fx bad failure", "f1 bad failure"] * 2  # after every failed attempt
    # Each hook saw the attempt's log file before its .fail rename.
    assert all(line.split()[-1].startswith(("good_", "bad_")) for line in lines)
    assert all(line.split()[-1].endswith(".log") for line in lines)


def test_a_failing_hook_fails_the_run(site: Site) -> None:
    jobs = """
[[mirrors]]
name = "hooked"
provider = "command"
command = "/bin/true"
exec_on_success = ["/bin/sh -c 'exit 3'"]
"""
    config = site.worker_config("w1", jobs)
    site.start_manager()
    site.start_worker(config)
    state = site.wait_job("w1", "hooked", lambda j: j.status == "failed")
    assert state.error_msg == "error exec hook post-success: exit status 3"
    assert state.last_update is None  # never counted as a success
    assert state.next_schedule is not None  # still scheduled, as tunasync does
