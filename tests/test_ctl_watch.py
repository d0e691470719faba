"""``ctl watch``: jobs as they change, from the event stream.

The table mode is shown in a real terminal (tmux: run it, look at the screen, stop the job,
look again, Ctrl-C); the plain mode prints one flushed line per event for scripts.  A reader
certificate is enough for both.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from e2e import PYTHON, Site, wait_for

from mirrorbus.cli.ctl.live import LiveTable, LogEntry
from mirrorbus.cli.ctl.watch import plain_line
from mirrorbus.events import (
    AttemptFailed,
    AttemptStarted,
    JobEvent,
    JobPaused,
    JobRemoved,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    WorkerStarted,
    evolve,
)

T0 = datetime(2026, 11, 28, 15, 4, 5, tzinfo=UTC)

SLEEPING_JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "rsync://example.org/{name}/"
command = '''/bin/sh -c 'sleep 300 & wait' '''
"""

QUICK_JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
command = '''/bin/sh -c 'echo "Total size is 2.5G"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"
"""


def _entries(events: list[JobEvent | WorkerStarted]) -> list[LogEntry]:
    return [
        LogEntry(seq=i, subject=f"mirrorbus.evt.{e.worker}", time=e.at, event=e)
        for i, e in enumerate(events, 1)
    ]


def _run(worker: str = "w1", job: str = "debian") -> list[JobEvent]:
    at = [T0 + timedelta(seconds=i) for i in range(5)]
    return [
        RunStarted(id="1", at=at[0], worker=worker, job=job, run_id="r"),
        AttemptStarted(id="2", at=at[1], worker=worker, job=job, run_id="r", attempt=1),
        AttemptFailed(
            id="3", at=at[2], worker=worker, job=job, run_id="r", attempt=1, error="x", final=False
        ),
        AttemptStarted(id="4", at=at[3], worker=worker, job=job, run_id="r", attempt=2),
        RunSucceeded(id="5", at=at[4], worker=worker, job=job, run_id="r", attempt=2, size="1G"),
    ]


def test_the_table_folds_events_and_an_overlap_with_the_view_is_harmless() -> None:
    events = _run()
    truth: JobState | None = None
    for e in events:
        truth = evolve(truth, e)
    for seen in range(len(events) + 1):
        # The view already holds the first `seen` events; the stream re-delivers from the 1st.
        view: JobState | None = None
        for e in events[:seen]:
            view = evolve(view, e)
        table = LiveTable()
        table.load([view] if view else [])
        for entry in _entries(list(events)):
            table.apply(entry)
        assert table.jobs() == [truth]


def test_the_table_keeps_its_workers_and_drops_removed_jobs() -> None:
    table = LiveTable(workers=frozenset({"w1"}))
    table.load([JobState(worker="w1", name="a"), JobState(worker="w2", name="b")])
    assert [(j.worker, j.name) for j in table.jobs()] == [("w1", "a")]
    changes = [table.apply(e) for e in _entries([*_run("w2", "b"), *_run("w1", "a")[:1]])]
    assert changes == [False] * 5 + [True]
    assert table.jobs()[0].status == "pre-syncing"
    gone = JobRemoved(id="9", at=T0, worker="w1", job="a")
    assert table.apply(LogEntry(seq=9, subject="x", time=T0, event=gone)) is True
    assert table.jobs() == [] and table.last_seq == 9


def test_plain_lines_say_what_happened() -> None:
    lines = [
        plain_line(e)
        for e in _entries([*_run(), JobPaused(id="6", at=T0, worker="w1", job="debian")])
    ]
    assert lines == [
        "2026-11-28T15:04:05Z w1 debian pre-syncing (schedule)",
        "2026-11-28T15:04:06Z w1 debian syncing attempt 1",
        "2026-11-28T15:04:07Z w1 debian failed attempt 1, will retry: x",
        "2026-11-28T15:04:08Z w1 debian syncing attempt 2",
        "2026-11-28T15:04:09Z w1 debian success attempt 2 size 1G",
        "2026-11-28T15:04:05Z w1 debian paused",
    ]
    scheduled = JobScheduled(id="7", at=T0, worker="w1", job="debian", next_at=T0)
    started = WorkerStarted(id="8", at=T0, worker="w1", jobs=("a", "b"), hostname="h", pid=3)
    assert [plain_line(e) for e in _entries([scheduled, started])] == [
        "2026-11-28T15:04:05Z w1 debian next run 2026-11-28T15:04:05Z",
        "2026-11-28T15:04:05Z w1 - worker started (2 jobs, h pid 3)",
    ]
    junk = LogEntry(seq=3, subject="mirrorbus.evt.w1.debian", time=T0, event=None, error="bad")
    assert plain_line(junk) == "2026-11-28T15:04:05Z w1 debian undecodable event (seq 3): bad"


def _start_site(site: Site) -> None:
    config = site.worker_config(
        "w1", SLEEPING_JOB.format(name="long") + QUICK_JOB.format(name="quick")
    )
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "long", lambda j: j.status == "syncing")
    site.wait_job("w1", "quick", lambda j: j.status == "success")


def test_plain_watch_prints_each_event_as_it_happens(site: Site, tmp_path: Path) -> None:
    _start_site(site)
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    reader = site.ctl_config("reader")
    argv = ["-c", str(reader), "watch", "--plain", "-w", "w1", "--count", "3", "--timeout", "60"]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [*PYTHON, "ctl", *argv], stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    try:
        wait_for(lambda: "# watching events from sequence" in err.read_text(), 20, "watch ready")
        stopped = site.ctl("stop", "-w", "w1", "long")
        assert stopped.returncode == 0, stopped.stderr
        # Lines come as they happen (flushed), before the process ends.
        wait_for(lambda: "paused" in out.read_text(), 20, "the paused line")
        assert proc.wait(30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    stamp = lines[0].split(" ")[0]
    assert stamp.endswith("Z") and abs(
        datetime.fromisoformat(stamp) - datetime.now(UTC)
    ) < timedelta(minutes=2)
    assert [line.split(" ", 1)[1] for line in lines] == [
        "w1 long failed attempt 1: killed by manager",
        "w1 long paused",
        "w1 long stop accepted: stopped the running sync; paused",
    ]

    # Another worker's events are not shown with -w w1; --timeout ends a quiet watch.
    quiet = site.ctl("-c", str(reader), "watch", "--plain", "-w", "w2", "--timeout", "2")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_live_table_in_a_real_terminal(site: Site) -> None:
    _start_site(site)
    socket = f"mirrorbus-test-{uuid.uuid4().hex[:8]}"
    reader = site.ctl_config("reader")
    command = " ".join(shlex.quote(a) for a in PYTHON)
    watch = f"{command} ctl -c {shlex.quote(str(reader))} watch"
    shell = f"cd {shlex.quote(os.getcwd())}; {watch}; echo EXITED=$?; sleep 60"
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    size = ["-x", "160", "-y", "40"]
    subprocess.run(
        ["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", *size, "-s", "watch", shell],
        check=True,
        env=env,
        timeout=10,
    )
    try:

        def screen() -> str:
            return _tmux(socket, "capture-pane", "-p", "-t", "watch")

        def row(job: str) -> str:
            return next((ln for ln in screen().splitlines() if f" {job} " in ln), "")

        wait_for(lambda: "syncing" in row("long"), 30, "the table with long syncing")
        first = screen()
        assert "mirrorbus watch" in first and "Ctrl-C quits" in first
        for header in ("WORKER", "JOB", "STATUS", "LAST SUCCESS", "NEXT", "SIZE"):
            assert header in first
        assert "success" in row("quick") and "2.5G" in row("quick") and "ago" in row("quick")

        stopped = site.ctl("stop", "-w", "w1", "long")
        assert stopped.returncode == 0, stopped.stderr
        # The same row changes on the screen: no polling, the event stream drives it.
        wait_for(lambda: "paused" in row("long"), 20, "long shown paused")
        assert "killed by" in row("long")  # the error column (cut to the terminal's width)
        assert "syncing" not in row("long")
        # The worker's answer follows the status events: the footer shows the last event.
        wait_for(lambda: "last: " in (s := screen()) and " w1 long stop accepted" in s, 10)

        _tmux(socket, "send-keys", "-t", "watch", "C-c")
        wait_for(lambda: "EXITED=0" in screen(), 15, "watch to exit 0 on Ctrl-C")
        assert "Traceback" not in screen()
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10)
