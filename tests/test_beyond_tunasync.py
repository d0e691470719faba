"""What tunasync users asked for and mirrorbus adds: schedule jitter, a retry back-off, and a
per-upstream-host concurrency limit (several jobs pulling from one rsync host that allows
two connections)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from e2e import Site, wait_for

from mirrorbus.config.worker import load_worker_config
from mirrorbus.config.worker_mirrors import upstream_host
from mirrorbus.errors import ConfigError
from mirrorbus.worker.run import backoff


@pytest.mark.parametrize(
    ("upstream", "host"),
    [
        ("rsync://rsync.example.org/debian/", "rsync.example.org"),
        ("rsync://user@Mirror.Example.org:8873/debian/", "mirror.example.org"),
        ("https://example.org/pypi/", "example.org"),
        ("rsync.example.org::debian/", "rsync.example.org"),
        ("master.bioconductor.org:./", "master.bioconductor.org"),
        ("rsync://[2001:db8::1]/m/", "2001:db8::1"),
        ("/srv/local/", ""),
        ("", ""),
    ],
)
def test_upstream_host(upstream: str, host: str) -> None:
    assert upstream_host(upstream) == host


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(10, n) for n in (2, 3, 4)] == [10, 20, 40]
    assert backoff(10, 30) == 3600


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "worker.toml"
    path.write_text('[global]\nname = "w1"\nmirror_dir = "/m"\nlog_dir = "/l/{{.Name}}"\n' + text)
    return load_worker_config(path)


def test_config_keys_default_inherit_and_override(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """
jitter = 2
retry_backoff = 30
upstream_limit = 3

[upstream_limits]
"RSYNC.example.org" = 2

[[mirrors]]
name = "a"
provider = "command"
command = "/bin/true"
upstream = "rsync://rsync.example.org/a/"

[[mirrors]]
name = "b"
provider = "command"
command = "/bin/true"
upstream = "https://other.example.org/b/"
jitter = 0
retry_backoff = 5
""",
    )
    a, b = cfg.mirrors
    assert (a.jitter, a.retry_backoff) == (timedelta(minutes=2), timedelta(seconds=30))
    assert (b.jitter, b.retry_backoff) == (timedelta(0), timedelta(seconds=5))
    assert cfg.host_limit(a.upstream_host) == 2  # named in [upstream_limits]
    assert cfg.host_limit(b.upstream_host) == 3  # the default
    assert cfg.host_limit("") == 0  # a local upstream is never limited
    plain = _load(tmp_path, '[[mirrors]]\nname = "c"\nprovider = "command"\ncommand = "x"\n')
    assert plain.mirrors[0].jitter == timedelta(0) and plain.upstream_limit == 0


def test_bad_limits_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[upstream_limits\]: key 'h': expected a positive"):
        _load(tmp_path, "[upstream_limits]\nh = 0\n")
    with pytest.raises(ConfigError, match="key 'jitter'"):
        _load(tmp_path, "jitter = -1\n")


def test_upstream_host_limit_caps_runs_per_host(site: Site) -> None:
    """Five jobs from one host allowing two connections, one job from another host, with
    ten slots: never more than two of the first host at once, the other never waits."""
    probe = site.root / "probe"
    probe.mkdir()
    script = (
        f"/bin/sh -c 'touch {probe}/$TUNASYNC_MIRROR_NAME; "
        f"ls {probe} | grep -c ^h >> {probe}.peaks; sleep 1; rm {probe}/$TUNASYNC_MIRROR_NAME'"
    )
    jobs = "".join(
        f'\n[[mirrors]]\nname = "h{i}"\nprovider = "command"\n'
        f'upstream = "rsync://busy.example.org/m{i}/"\ncommand = "{script}"\n'
        for i in range(5)
    ) + (
        f'\n[[mirrors]]\nname = "other"\nprovider = "command"\n'
        f'upstream = "rsync://quiet.example.org/o/"\ncommand = "{script}"\n'
    )
    config = site.worker_config(
        "w1", "[upstream_limits]\n'busy.example.org' = 2\n" + jobs, concurrent=10
    )
    site.start_manager()
    site.start_worker(config)
    for i in range(5):
        site.wait_job("w1", f"h{i}", lambda j: j.status == "success", timeout=30)
    other = site.wait_job("w1", "other", lambda j: j.status == "success")
    peaks = [int(x) for x in Path(f"{probe}.peaks").read_text().split()]
    assert max(peaks) == 2
    first_start = min(site.job("w1", f"h{i}").last_started for i in range(5))  # type: ignore[union-attr,type-var]
    assert other.last_started is not None
    assert other.last_started - first_start < timedelta(seconds=1)  # not queued behind busy


def test_retry_backoff_spaces_the_attempts(site: Site) -> None:
    stamps = site.root / "stamps"
    jobs = f"""
[[mirrors]]
name = "flaky"
provider = "command"
retry = 3
retry_backoff = 1
command = "/bin/sh -c 'date +%s.%N >> {stamps}; exit 1'"
"""
    site.start_manager()
    site.start_worker(site.worker_config("w1", jobs))
    site.wait_job("w1", "flaky", lambda j: j.status == "failed" and j.attempt == 3)
    times = [float(x) for x in wait_for(lambda: stamps.read_text().split(), what="stamps")]
    assert len(times) == 3
    assert times[1] - times[0] >= 1.0
    assert times[2] - times[1] >= 2.0


def test_jitter_delays_the_next_run_within_its_bound(site: Site) -> None:
    jobs = """
[[mirrors]]
name = "jittery"
provider = "command"
command = "/bin/true"
interval = 1
jitter = 0.5
"""
    site.start_manager()
    site.start_worker(site.worker_config("w1", jobs))
    state = site.wait_job(
        "w1", "jittery", lambda j: j.status == "success" and j.next_schedule is not None
    )
    assert state.next_schedule is not None and state.last_ended is not None
    delay = state.next_schedule - state.last_ended
    assert timedelta(minutes=1) <= delay <= timedelta(minutes=1.5, seconds=1)


def test_log_retention_is_configurable(site: Site, tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        "keep_logs = 3\n[[mirrors]]\nname = 'a'\nprovider = 'command'\n"
        "command = 'x'\n[[mirrors]]\nname = 'b'\nprovider = 'command'\n"
        "command = 'x'\nkeep_logs = 2\n",
    )
    assert [m.keep_logs for m in cfg.mirrors] == [3, 2]
    assert (
        _load(tmp_path, "[[mirrors]]\nname = 'c'\nprovider = 'command'\ncommand = 'x'\n")
        .mirrors[0]
        .keep_logs
        == 10
    )  # tunasync's default

    jobs = """
[[mirrors]]
name = "flaky"
provider = "command"
retry = 5
keep_logs = 2
command = "/bin/false"
"""
    site.start_manager()
    site.start_worker(site.worker_config("w1", jobs))
    site.wait_job("w1", "flaky", lambda j: j.status == "failed" and j.attempt == 5)
    logs = [p.name for p in (site.root / "logs" / "w1" / "flaky").iterdir() if p.name != "latest"]
    assert len(logs) == 2 and all(name.endswith(".log.fail") for name in logs)
