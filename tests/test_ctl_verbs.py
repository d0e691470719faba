"""The remaining tunasynctl-style verbs end to end: history, workers --json, the
`mirrorbusctl` alias, and their error cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from e2e import Site
from test_e2e_worker import COUNTING_JOB


def test_history_workers_and_the_alias(site: Site) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="job", interval=60))
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "job", lambda j: j.status == "success")
    assert site.ctl("restart", "-w", "w1", "job").returncode == 0
    site.wait_job("w1", "job", lambda j: len(site.runs("w1", "job")) == 2 and j.status == "success")

    runs = json.loads(site.ctl("history", "-w", "w1", "job", "--json").stdout)
    assert [(r["result"], r["reason"], r["size"], r["exit_code"]) for r in runs] == [
        ("success", "restart", "1.5K", 0),
        ("success", "schedule", "1.5K", 0),
    ]
    table = site.ctl("history", "-w", "w1", "job").stdout.splitlines()
    assert table[0].split() == [
        "STARTED",
        "DURATION",
        "RESULT",
        "ATTEMPTS",
        "SIZE",
        "EXIT",
        "ERROR",
    ]
    assert len(table) == 3 and all("success" in line for line in table[1:])
    none = site.ctl("history", "-w", "w1", "nosuch", "--json")
    assert (none.returncode, json.loads(none.stdout)) == (0, [])

    workers = json.loads(site.ctl("workers", "--json").stdout)
    assert [(w["id"], w["online"], w["token"]) for w in workers] == [("w1", True, "REDACTED")]

    alias = Path(sys.executable).with_name("mirrorbusctl")
    listed = subprocess.run(
        [str(alias), "--state-dir", str(site.root), "list", "--all", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert [i["name"] for i in json.loads(listed.stdout)] == ["job"]

    for verb in ("restart", "ping", "disable"):
        unknown = site.ctl(verb, "-w", "w1", "nosuch")
        assert unknown.returncode == 1
        assert unknown.stderr.endswith("unknown job 'nosuch' on worker w1\n")
