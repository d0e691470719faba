"""End to end: real nats-server (TLS), real manager and worker processes, the real ctl.

A job runs on schedule and its status, size and times reach the SQL view; stop, disable,
restart, start --force and ping behave as in docs/tunasync.md §2.10 (with its documented fixes);
unknown workers and jobs are one-line errors with exit status 1.
"""

from __future__ import annotations

import json
from datetime import timedelta

from e2e import Site, alive, count_lines, read_pid, wait_for

from mirrorbus.events import STATUSES
from projections.tunasync import WEB_FIELDS

COUNTING_JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
interval = {interval}
command = '''/bin/sh -c 'echo run >> "$TUNASYNC_WORKING_DIR/runs"; env | grep ^TUNASYNC_ | sort; echo "Total size is 1.5K"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"
"""

SLEEPING_JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "rsync://example.org/{name}/"
interval = {interval}
command = '''/bin/sh -c 'echo $$ > "$TUNASYNC_WORKING_DIR/pid"; echo run >> "$TUNASYNC_WORKING_DIR/runs"; sleep 300 & wait' '''
"""


def test_job_runs_on_schedule_and_reaches_the_view(site: Site) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="hello", interval=0.05))
    site.start_manager()
    site.start_worker(config)
    runs = site.workdir("w1", "hello") / "runs"

    first = site.wait_job("w1", "hello", lambda j: j.status == "success", what="first success")
    assert first.size == "1.5K"
    assert first.upstream == "https://example.org/hello/"
    assert first.last_started and first.last_ended and first.last_update
    assert first.last_started <= first.last_ended == first.last_update
    assert first.exit_code == 0 and first.error_msg == ""
    # Scheduled one interval (3 s) after the end of the run.
    assert first.next_schedule is not None
    assert abs(first.next_schedule - first.last_ended - timedelta(seconds=3)) < timedelta(seconds=1)

    # ... and it runs again on that schedule.
    wait_for(lambda: count_lines(runs) >= 2, 15, "the second scheduled run")
    second = site.wait_job(
        "w1", "hello", lambda j: j.last_update != first.last_update and j.status == "success"
    )
    assert second.last_started is not None and second.last_started >= first.next_schedule
    history = site.runs("w1", "hello")
    assert [r.result for r in history[:2]] == ["success", "success"]
    assert history[0].started_at > history[1].started_at

    # The log of an attempt is where tunasync puts it, with the TUNASYNC_* environment.
    log_dir = site.root / "logs" / "w1" / "hello"
    latest = (log_dir / "latest").resolve()
    assert latest.parent == log_dir and latest.name.startswith("hello_")
    text = latest.read_text()
    assert f"TUNASYNC_WORKING_DIR={site.workdir('w1', 'hello')}" in text
    assert "TUNASYNC_MIRROR_NAME=hello" in text
    assert "TUNASYNC_UPSTREAM_URL=https://example.org/hello/" in text
    assert f"TUNASYNC_LOG_FILE={latest}" in text

    # The ctl shows it: a table for people, tunasync's /jobs items for scripts.
    table = site.ctl("list", "--all")
    assert table.returncode == 0, table.stderr
    assert "hello" in table.stdout and "success" in table.stdout and "1.5K" in table.stdout
    listed = site.ctl("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [list(item) for item in items] == [list(WEB_FIELDS)]
    assert items[0]["name"] == "hello" and items[0]["status"] in STATUSES
    assert items[0]["size"] == "1.5K" and items[0]["last_update_ts"] > 0
    per_worker = json.loads(site.ctl("list", "-w", "w1", "--json").stdout)
    assert per_worker[0]["worker"] == "w1" and per_worker[0]["error_msg"] == ""


def test_commands_behave_as_tunasync(site: Site) -> None:
    """concurrent = 1: `long` holds the only slot, `other` waits for it."""
    config = site.worker_config(
        "w1",
        SLEEPING_JOB.format(name="long", interval=60)
        + COUNTING_JOB.format(name="other", interval=60),
        concurrent=1,
    )
    site.start_manager()
    site.start_worker(config)
    pid_file = site.workdir("w1", "long") / "pid"
    site.wait_job("w1", "long", lambda j: j.status == "syncing")
    first_pid = wait_for(lambda: read_pid(pid_file), what="long's pid")
    assert site.job("w1", "other") is not None
    assert site.job("w1", "other").status == "none"  # type: ignore[union-attr]

    # start --force bypasses the concurrency limit.
    forced = site.ctl("start", "--force", "-w", "w1", "other")
    assert forced.returncode == 0, forced.stderr
    assert "accepted" in forced.stdout
    site.wait_job("w1", "other", lambda j: j.status == "success")
    assert site.job("w1", "long").status == "syncing"  # type: ignore[union-attr]

    # stop: the sync is killed (its whole process group), the job is paused.
    stopped = site.ctl("stop", "-w", "w1", "long")
    assert stopped.returncode == 0, stopped.stderr
    assert "accepted: stopped the running sync; paused" in stopped.stdout
    state = site.wait_job("w1", "long", lambda j: j.status == "paused")
    assert state.next_schedule is None
    wait_for(lambda: not alive(first_pid), 5, "the killed sync to be gone")
    killed = site.runs("w1", "long")[0]
    assert (killed.result, killed.error) == ("failed", "killed by manager")

    # start: runs again now.
    assert site.ctl("start", "-w", "w1", "long").returncode == 0
    site.wait_job("w1", "long", lambda j: j.status == "syncing")
    second_pid = wait_for(lambda: (p := read_pid(pid_file)) != first_pid and p, what="new pid")

    # restart: kills the running sync and starts a new one.
    restarted = site.ctl("restart", "-w", "w1", "long")
    assert restarted.returncode == 0, restarted.stderr
    assert "killed the running sync and started again" in restarted.stdout
    third_pid = wait_for(
        lambda: (p := read_pid(pid_file)) not in (first_pid, second_pid) and p,
        what="pid after restart",
    )
    assert not alive(second_pid)
    site.wait_job("w1", "long", lambda j: j.status == "syncing")
    assert [r.error for r in site.runs("w1", "long")[:2]] == ["", "killed by manager"]

    # disable: killed, disabled, and stop on a disabled job is refused.
    assert site.ctl("disable", "-w", "w1", "long").returncode == 0
    site.wait_job("w1", "long", lambda j: j.status == "disabled")
    wait_for(lambda: not alive(third_pid), 5, "the disabled job's sync to be gone")
    refused = site.ctl("stop", "-w", "w1", "long")
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        "rejected: job is disabled; use start or restart to enable it"
    )

    # ping answers and changes nothing (tunasync's ping unscheduled the job).
    before = site.job("w1", "other")
    pinged = site.ctl("ping", "-w", "w1", "other")
    assert pinged.returncode == 0 and "pong: success, next run" in pinged.stdout
    assert site.job("w1", "other") == before

    # Every answer is in the view's command log with the issuer's identity.
    answered = site.view.dump()["commands"]
    assert len(answered) == 7
    assert all("mirrorbus-admin" in row[6] for row in answered)


def test_unknown_worker_and_job_are_one_line_errors(site: Site) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="hello", interval=60))
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "hello", lambda j: j.status == "success")

    job = site.ctl("start", "-w", "w1", "nosuch")
    assert job.returncode == 1
    assert job.stderr == "mirrorbus ctl start: error: unknown job 'nosuch' on worker w1\n"
    worker = site.ctl("stop", "-w", "nobody", "hello")
    assert worker.returncode == 1
    assert worker.stderr == (
        "mirrorbus ctl stop: error: unknown worker 'nobody' (known workers: w1)\n"
    )
    # A subject-like argument is only a name that nobody has; one that no job can have is
    # refused as such.
    for pattern in ("a.*", "*", ">"):
        unknown = site.ctl("start", "-w", "w1", pattern)
        assert unknown.returncode == 1
        assert unknown.stderr == (
            f"mirrorbus ctl start: error: unknown job {pattern!r} on worker w1\n"
        )
    bad = site.ctl("start", "-w", "w1", "..")
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1
    assert "job name '..' is not allowed" in bad.stderr


def test_env_fail_on_match_and_failed_logs(site: Site) -> None:
    """A command job sees its [mirrors.env] on top of TUNASYNC_*; fail_on_match fails an
    exit-0 run; a failed attempt's log is renamed .fail and `latest` follows it."""
    jobs = """
[[mirrors]]
name = "envy"
provider = "command"
command = '''/bin/sh -c 'echo "greeting=$GREETING dir=$TUNASYNC_WORKING_DIR"' '''
  [mirrors.env]
  GREETING = "bonjour"
  TUNASYNC_WORKING_DIR = "/overridden"

[[mirrors]]
name = "fussy"
provider = "command"
retry = 1
fail_on_match = "fatal: "
command = '''/bin/sh -c 'echo "fatal: remote end hung up"; echo "fatal: again"; exit 0' '''
"""
    site.start_manager()
    site.start_worker(site.worker_config("w1", jobs))
    site.wait_job("w1", "envy", lambda j: j.status == "success")
    log = (site.root / "logs" / "w1" / "envy" / "latest").resolve()
    header, output = log.read_text().split("\n", 3)[:3], log.read_text().split("\n", 3)[3]
    assert header[0].startswith("# mirrorbus: command: /bin/sh -c ")  # then cwd and env keys
    assert "GREETING" in header[2]
    assert output == "greeting=bonjour dir=/overridden\n"  # env wins, as in tunasync

    fussy = site.wait_job("w1", "fussy", lambda j: j.status == "failed")
    assert fussy.error_msg == "Fail-on-match regexp found 2 matches"
    assert fussy.exit_code == 0
    log_dir = site.root / "logs" / "w1" / "fussy"
    latest = (log_dir / "latest").resolve()
    assert latest.name.endswith(".log.fail") and latest.parent == log_dir
    assert "fatal: again" in latest.read_text()


def test_a_working_dir_that_cannot_be_made_fails_the_run_not_the_worker(site: Site) -> None:
    """The working dir is made (0755) before each attempt; when that fails (here: its parent is
    a file) the run fails with the reason and the log is kept as ``.fail``, and the worker's
    other jobs go on running."""
    blocker = site.root / "not-a-dir"
    blocker.write_text("a file where a directory should be\n")
    jobs = f"""
[[mirrors]]
name = "blocked"
provider = "command"
command = "/bin/true"
retry = 2
mirror_dir = "{blocker}/blocked"

[[mirrors]]
name = "fine"
provider = "command"
command = "/bin/true"
"""
    site.start_manager()
    worker = site.start_worker(site.worker_config("w1", jobs))
    blocked = site.wait_job("w1", "blocked", lambda j: j.status == "failed" and j.attempt == 2)
    assert blocked.error_msg == f"cannot create working dir {blocker}/blocked: Not a directory"
    failed = sorted((site.root / "logs" / "w1" / "blocked").glob("blocked_*.log.fail"))
    assert len(failed) == 2  # one per attempt, each kept as .fail
    site.wait_job("w1", "fine", lambda j: j.status == "success")
    assert worker.poll() is None  # still running
    assert site.workdir("w1", "fine").is_dir()
