"""Reload (``ctl reload -w W`` and SIGHUP): jobs added, removed and modified from the new
config, a removed job leaving the status view through an event, a broken config changing
nothing (docs/tunasync.md §4.9, with its fixes)."""

from __future__ import annotations

import signal

from e2e import Site, count_lines, wait_for


def job(name: str, tag: str, interval: float = 60) -> str:
    return f"""
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
interval = {interval}
command = '''/bin/sh -c 'echo {tag} >> "$TUNASYNC_WORKING_DIR/runs"' '''
"""


def test_reload_adds_removes_and_modifies_jobs(site: Site) -> None:
    config = site.worker_config("w1", job("keep", "k") + job("gone", "g") + job("changed", "v1"))
    site.start_manager()
    site.start_worker(config, key="worker")
    for name in ("keep", "gone", "changed"):
        site.wait_job("w1", name, lambda j: j.status == "success")
    keep_before = site.job("w1", "keep")

    site.worker_config(
        "w1", job("keep", "k") + job("changed", "v2") + job("new", "n"), concurrent=3
    )
    result = site.ctl("reload", "-w", "w1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"reload w1: accepted: reloaded {config}: 1 added, 1 removed, 1 modified"
    )

    site.wait_job("w1", "new", lambda j: j.status == "success")
    changed = site.workdir("w1", "changed") / "runs"
    wait_for(lambda: changed.read_text().splitlines() == ["v1", "v2"], what="changed re-run")
    wait_for(lambda: site.job("w1", "gone") is None, what="gone to leave the view")
    assert "gone" in [j.name for j in site.view.jobs("w1", include_removed=True)]
    assert site.job("w1", "keep") == keep_before  # untouched: not re-run, same schedule
    assert count_lines(site.workdir("w1", "keep") / "runs") == 1
    listed = site.ctl("list", "-w", "w1")
    assert "gone" not in listed.stdout and "new" in listed.stdout


def test_a_broken_config_changes_nothing_and_sighup_reloads(site: Site) -> None:
    config = site.worker_config("w1", job("one", "1"))
    site.start_manager()
    worker = site.start_worker(config, key="worker")
    site.wait_job("w1", "one", lambda j: j.status == "success")

    config.write_text(config.read_text() + "\n[[mirrors]]\nname = 'x'\nprovider = 'ftp'\n")
    refused = site.ctl("reload", "-w", "w1")
    assert refused.returncode == 1
    assert "rejected: config not reloaded, the running one stays:" in refused.stderr
    assert "unknown provider 'ftp'" in refused.stderr
    assert [j.name for j in site.view.jobs("w1")] == ["one"]

    site.worker_config("w1", job("one", "1") + job("two", "2"))
    worker.send_signal(signal.SIGHUP)
    site.wait_job("w1", "two", lambda j: j.status == "success")
    assert "reloaded" in site.output("worker")
    assert worker.poll() is None  # SIGHUP reloads, it does not stop the worker


def test_reload_for_an_unknown_worker_is_an_error(site: Site) -> None:
    config = site.worker_config("w1", job("one", "1"))
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "one", lambda j: j.status == "success")
    result = site.ctl("reload", "-w", "w9")
    assert result.returncode == 1
    assert result.stderr == (
        "mirrorbus ctl reload: error: unknown worker 'w9' (known workers: w1)\n"
    )
