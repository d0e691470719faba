"""What the log and the view store, in view: ``mirrorbus ctl status`` and the storage metrics,
against a real manager and worker on a real nats-server."""

from __future__ import annotations

import re
import subprocess

from e2e import PYTHON, Site, wait_for

JOB = """
[[mirrors]]
name = "tiny"
provider = "command"
upstream = "https://example.org/tiny/"
command = '''/bin/sh -c 'echo hi' '''
"""


def test_ctl_status_sums_up_workers_jobs_and_storage(site: Site) -> None:
    site.start_manager()
    site.start_worker(site.worker_config("w1", JOB), key="worker")
    site.wait_job("w1", "tiny", lambda j: j.status == "success")

    result = wait_for(
        lambda: (r := site.ctl("status")).returncode == 0 and "1 online" in r.stdout and r,
        20,
        "ctl status with the worker online",
    )
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert re.fullmatch(r".* at event \d+, view \d+\.\d [KM]iB", lines["manager"]), lines
    assert lines["workers"] == "1 online, 0 offline"
    assert lines["jobs"] == "1: 1 success"
    streams = [line for line in result.stdout.splitlines() if line.startswith("stream")]
    evt = next(line for line in streams if "MIRRORBUS_EVT" in line)
    stored = re.search(r"MIRRORBUS_EVT (\d+(?:\.\d)?) (B|KiB) in (\d+) messages, (\d+) B each", evt)
    assert stored is not None, evt
    assert int(stored[3]) >= 5  # worker started, configured, scheduled, run started ... ended
    assert {"MIRRORBUS_EVT", "MIRRORBUS_SNAP", "MIRRORBUS_CMD"} == {
        line.split()[1] for line in streams
    }

    # A reader may look at the event and snapshot streams only: the rest is left out.
    reader = subprocess.run(
        [*PYTHON, "ctl", "-c", str(site.ctl_config("reader")), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reader.returncode == 0, reader.stderr
    assert "MIRRORBUS_EVT" in reader.stdout and "MIRRORBUS_CMD" not in reader.stdout
