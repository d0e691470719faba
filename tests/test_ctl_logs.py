"""`ctl logs -w W JOB [-f]`: a job's latest log, fetched from its worker over the bus,
followed while the job runs."""

from __future__ import annotations

from e2e import Site

TICKING = """
[[mirrors]]
name = "ticker"
provider = "command"
command = '''/bin/sh -c 'for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.5; done' '''
"""


def test_logs_follow_a_running_job_and_show_the_last_one(site: Site) -> None:
    site.start_manager()
    site.start_worker(site.worker_config("w1", TICKING), key="worker")
    site.wait_job("w1", "ticker", lambda j: j.status == "syncing")

    followed = site.ctl("logs", "-w", "w1", "ticker", "-f", timeout=60)
    assert followed.returncode == 0, followed.stderr
    header, ticks = followed.stdout.split("\n", 3)[:3], followed.stdout.split("\n", 3)[3]
    assert header[0].startswith("# mirrorbus: command: /bin/sh -c ")  # what ran, then output
    assert ticks == "".join(f"tick {i}\n" for i in range(1, 7))
    assert followed.stderr.startswith("==> w1/ticker: ticker_")
    site.wait_job("w1", "ticker", lambda j: j.status == "success")

    tail = site.ctl("logs", "-w", "w1", "ticker", "-n", "7")
    assert (tail.returncode, tail.stdout) == (0, "tick 6\n")

    unknown = site.ctl("logs", "-w", "w1", "nosuch")
    assert unknown.returncode == 1
    assert unknown.stderr == "mirrorbus ctl logs: error: unknown job 'nosuch' on worker w1\n"

    site.stop("worker")
    gone = site.ctl("logs", "-w", "w1", "ticker")
    assert gone.returncode == 1
    assert gone.stderr == ("mirrorbus ctl logs: error: no answer from worker w1: is it running?\n")
