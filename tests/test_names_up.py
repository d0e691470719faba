"""Names as a real site has them, end to end with ``mirrorbus up``: real processes all the way.

Worker ``mirrors.example.org`` runs ``crates.io-index.git``, ``u.sb`` and ``linux stable``;
every place a person or a client reads a name shows it as written (``ctl list`` and its JSON,
``/jobs``, ``/workers``, ``/metrics``, the log files, the job's environment), the ``ctl``
verbs reach the jobs by those names, and a restart of everything restores them.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from e2e import wait_for
from test_up import Up

pytestmark = pytest.mark.e2e  # every test here starts processes

WORKER = "mirrors.example.org"
NAMES = ("-miroir café", "crates.io-index.git", "u.sb", "linux stable")

CONFIG = f"""
[global]
name = "{WORKER}"
mirror_dir = "mirrors"
log_dir = "logs/{{{{.Name}}}}"
concurrent = 3
interval = 60
"""
SCRIPT = (
    'printf %s "$TUNASYNC_MIRROR_NAME" > "$TUNASYNC_WORKING_DIR/name"; '
    'echo "syncing $TUNASYNC_MIRROR_NAME"; '
    'if [ -e "$TUNASYNC_WORKING_DIR/hold" ]; then sleep 300 & wait; fi'
)
JOB = (
    '\n[[mirrors]]\nname = "{name}"\nprovider = "command"\n'
    'upstream = "https://example.org/{name}/"\n'
    "command = '''/bin/sh -c '" + SCRIPT + "' '''\n"
)


def _get(up: Up, path: str) -> bytes:
    url = f"http://127.0.0.1:{up.http_port}{path}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def _jobs(up: Up) -> dict[str, dict[str, object]]:
    result = up.ctl("list", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return {str(i["name"]): i for i in json.loads(result.stdout)}


def _all_succeeded(up: Up) -> dict[str, dict[str, object]] | None:
    result = up.ctl("list", "--all", "--json")
    if result.returncode != 0:
        return None
    items = {str(i["name"]): i for i in json.loads(result.stdout)}
    done = set(items) == set(NAMES) and all(i["status"] == "success" for i in items.values())
    return items if done else None


def test_a_site_with_dotted_and_spaced_names_runs_and_restarts(tmp_path: Path) -> None:
    up = Up(tmp_path)
    up.config.write_text(CONFIG + "".join(JOB.format(name=n) for n in NAMES))
    try:
        _scenario(up)
    finally:
        if up.proc is not None and up.proc.poll() is None:
            up.stop()


def _scenario(up: Up) -> None:
    up.start()
    # The banner's example command is one a shell takes as it is.
    assert "mirrorbus ctl start -w mirrors.example.org -- '-miroir café'" in up.text()
    items = wait_for(lambda: _all_succeeded(up), 60, "the jobs to succeed")
    assert {i["upstream"] for i in items.values()} == {f"https://example.org/{n}/" for n in NAMES}
    listed = up.ctl("list", "--all", "--json").stdout
    assert json.loads(_get(up, "/jobs")) == list(json.loads(listed))
    assert '"-miroir café"' in listed  # as written, not as \\u escapes
    assert [w["id"] for w in json.loads(_get(up, "/workers"))] == [WORKER]
    per_worker = json.loads(_get(up, f"/workers/{urllib.parse.quote(WORKER)}/jobs"))
    assert sorted((j["worker"], j["name"]) for j in per_worker) == sorted(
        (WORKER, n) for n in NAMES
    )
    for name in NAMES:  # the status page's history of a job, asked as the page asks it
        query = urllib.parse.urlencode({"worker": WORKER, "job": name})
        history = json.loads(_get(up, f"/api/history?{query}"))
        assert history["runs"], history
    metrics = _get(up, "/metrics").decode()
    runs = [line for line in metrics.splitlines() if line.startswith("mirrorbus_job_runs")]
    for name in NAMES:
        assert any(f'worker="{WORKER}"' in r and f'job="{name}"' in r for r in runs), runs
    table = up.ctl("list", "--all")
    assert table.returncode == 0
    for name in NAMES:
        assert name in table.stdout
    assert "%2E" not in table.stdout and "%20" not in table.stdout

    # The job's environment, its working directory and its log files carry the name.
    for name in NAMES:
        assert (up.tmp / "mirrors" / name / "name").read_text() == name
        logs = sorted((up.tmp / "logs" / name).glob(f"{name}_*.log"))
        assert logs, f"no log file for {name}"
        assert f"syncing {name}" in logs[-1].read_text()

    # ctl start / logs / history reach each job by its name.
    for name in NAMES:
        started = up.ctl("start", "-w", WORKER, "--", name)  # "--": a name may start with "-"
        assert started.returncode == 0, started.stderr
    wait_for(
        lambda: all(
            (h := up.ctl("history", "-w", WORKER, "--json", "--", n)).returncode == 0
            and len([r for r in json.loads(h.stdout) if r["result"] == "success"]) >= 2
            for n in NAMES
        ),
        60,
        "a second successful run of each job in its history",
    )
    shown = up.ctl("logs", "-w", WORKER, "u.sb")
    assert shown.returncode == 0, shown.stderr
    assert "syncing u.sb" in shown.stdout

    # ctl stop on a running job with a space in its name.
    spaced = "linux stable"
    (up.tmp / "mirrors" / spaced / "hold").touch()
    assert up.ctl("start", "-w", WORKER, spaced).returncode == 0
    wait_for(lambda: _jobs(up)[spaced]["status"] == "syncing", 30, "linux stable to run")
    stopped = up.ctl("stop", "-w", WORKER, spaced)
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: _jobs(up)[spaced]["status"] == "paused", 30, "linux stable to stop")
    (up.tmp / "mirrors" / spaced / "hold").unlink()

    # A subject-like argument is a name nobody has.
    for pattern in ("*", ">", "crates.*"):
        unknown = up.ctl("start", "-w", WORKER, pattern)
        assert unknown.returncode == 1
        assert f"unknown job {pattern!r}" in unknown.stderr

    # Everything restarted: the same names, the same statuses.
    before = _jobs(up)
    assert up.stop() == 0
    up.start()
    after = wait_for(lambda: (j := _jobs(up)) and set(j) == set(NAMES) and j, 30, "the view")
    assert {n: i["status"] for n, i in after.items()} == {n: i["status"] for n, i in before.items()}
    assert after[spaced]["status"] == "paused"
    assert up.ctl("start", "-w", WORKER, spaced).returncode == 0
    wait_for(lambda: _all_succeeded(up), 60, "linux stable to run again after the restart")

    # Reload with a renamed job: the old name goes, the new one (dots and a space) runs.
    renamed = "u.sb mirror.v2"
    up.config.write_text(up.config.read_text().replace('"u.sb"', f'"{renamed}"'))
    reloaded = up.ctl("reload", "-w", WORKER)
    assert reloaded.returncode == 0, reloaded.stderr
    jobs = wait_for(
        lambda: (j := _jobs(up)) and renamed in j and j[renamed]["status"] == "success" and j,
        60,
        "the renamed job to run",
    )
    assert set(jobs) == (set(NAMES) - {"u.sb"}) | {renamed}
    assert (up.tmp / "mirrors" / renamed / "name").read_text() == renamed
