"""tunasynctl's view-maintenance verbs over the bus: set-size, rm-worker, flush; and what
a reader certificate may not do."""

from __future__ import annotations

import time
from pathlib import Path

from e2e import Site, count_lines, wait_for
from test_e2e_worker import COUNTING_JOB


def test_set_size_rm_worker_and_flush(site: Site, tmp_path: Path) -> None:
    config = site.worker_config(
        "w1",
        COUNTING_JOB.format(name="kept", interval=60)
        + COUNTING_JOB.format(name="old", interval=60),
    )
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "kept", lambda j: j.status == "success" and j.size == "1.5K")
    site.wait_job("w1", "old", lambda j: j.status == "success")

    sized = site.ctl("set-size", "-w", "w1", "kept", "1.2T")
    assert sized.returncode == 0, sized.stderr
    assert sized.stdout.strip() == "set-size w1/kept: accepted: size set to 1.2T"
    site.wait_job("w1", "kept", lambda j: j.size == "1.2T")

    # flush: disabled jobs leave the view; the others stay.
    assert site.ctl("disable", "-w", "w1", "old").returncode == 0
    flushed = site.ctl("flush")
    assert (flushed.returncode, flushed.stdout) == (0, "Successfully flushed disabled jobs\n")
    wait_for(lambda: site.job("w1", "old") is None, what="the disabled job to leave the view")
    assert site.job("w1", "kept") is not None
    # ... until it runs again, with everything it had.
    assert site.ctl("start", "-w", "w1", "old").returncode == 0
    back = site.wait_job("w1", "old", lambda j: j.status == "success")
    assert back.upstream == "https://example.org/old/"

    # rm-worker: the worker's record goes, its jobs stay; unknown workers are refused.
    assert site.stop("worker") == 0
    removed = site.ctl("rm-worker", "-w", "w1")
    assert (removed.returncode, removed.stdout) == (0, "Successfully removed the worker w1\n")
    wait_for(lambda: site.view.workers() == [], what="the worker's record to go")
    assert {j.name for j in site.view.jobs("w1")} == {"kept", "old"}
    unknown = site.ctl("rm-worker", "-w", "w1")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "mirrorbus ctl rm-worker: error: unknown worker 'w1' (known workers: none)\n"
    )

    # The operators' changes are events: a rebuild gives the same view.
    assert site.rebuild(tmp_path / "rebuilt.db") == site.view.dump()


def test_a_reader_may_look_but_not_command(site: Site, tmp_path: Path) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="job", interval=60))
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "job", lambda j: j.status == "success")
    reader = site.ctl_config("reader")

    def ctl(*args: str):  # type: ignore[no-untyped-def]
        return site.cli("ctl", "-c", str(reader), *args)

    listed = ctl("list", "--all", "--json")
    assert listed.returncode == 0 and '"name": "job"' in listed.stdout
    assert ctl("workers").returncode == 0
    for verb in (
        ["start", "-w", "w1", "job"],
        ["flush"],
        ["rm-worker", "-w", "w1"],
        ["set-size", "-w", "w1", "job", "1K"],
        ["reload", "-w", "w1"],
    ):
        denied = ctl(*verb)
        assert denied.returncode == 3, (verb, denied.stderr)
        assert "permission denied" in denied.stderr.lower(), denied.stderr
        assert len(denied.stderr.splitlines()) == 1
    assert site.job("w1", "job").status == "success"  # type: ignore[union-attr]


def test_a_command_to_an_offline_worker_says_so_and_expires(site: Site) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="job", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "job", lambda j: j.status == "success")
    assert site.stop("worker") == 0
    wait_for(lambda: not site.view.workers()[0].online, what="the worker offline")

    late = site.ctl("--timeout", "1", "--ttl", "2", "start", "-w", "w1", "job")
    assert late.returncode == 1
    assert late.stderr.startswith(
        "mirrorbus ctl start: error: no answer from worker w1 within 1s (offline, last seen "
    )
    assert "the command stays queued until" in late.stderr
    time.sleep(2.5)  # past its expiry

    site.start_worker(config, key="worker")
    answered = wait_for(
        lambda: [c for c in site.view.dump()["commands"] if c[3] == "start"],
        20,
        "the worker's answer to the queued start",
    )
    assert answered[0][4] is False  # not accepted ...
    assert answered[0][5].startswith("expired: given at")  # ... because it expired
    time.sleep(1)
    assert count_lines(site.workdir("w1", "job") / "runs") == 1  # and it did not run
