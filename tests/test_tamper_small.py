"""The small holes: an oversized size text refused by the worker with a clear answer, and
directories made with explicit modes whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e import Site
from test_e2e_worker import COUNTING_JOB

from mirrorbus.dirs import make_dirs
from mirrorbus.events.schema import MAX_SIZE_TEXT
from mirrorbus.worker.joblog import new_attempt_log
from projections import tables


def test_an_oversized_size_is_refused_by_the_worker_and_the_view_keeps_the_old_one(
    site: Site,
) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="kept", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "kept", lambda j: j.status == "success" and j.size == "1.5K")

    huge = "9" * 200
    sized = site.ctl("set-size", "-w", "w1", "kept", huge)
    assert sized.returncode != 0
    assert sized.stderr.strip() == (
        f"mirrorbus ctl set-size: error: rejected: size of 200 characters refused: at most "
        f"{MAX_SIZE_TEXT} (e.g. 1.2T)"
    )
    # A size that fits is still taken, and the refused one never reached the view.
    assert site.ctl("set-size", "-w", "w1", "kept", "9" * MAX_SIZE_TEXT).returncode == 0
    site.wait_job("w1", "kept", lambda j: j.size == "9" * MAX_SIZE_TEXT)
    assert site.view.dead_letters() == []


def test_the_size_limit_is_the_views_column() -> None:
    size = tables.jobs.c.size.type
    assert getattr(size, "length", None) == MAX_SIZE_TEXT


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_000")
def test_directories_get_their_mode_under_umask_000(tmp_path: Path) -> None:
    work = tmp_path / "srv" / "mirror" / "debian"
    make_dirs(work, 0o755)
    assert [_mode(p) for p in (tmp_path / "srv", work.parent, work)] == [0o755] * 3
    private = tmp_path / "state" / "jetstream"
    make_dirs(private, 0o700)
    assert [_mode(p) for p in (private.parent, private)] == [0o700] * 2
    # A job's log directory, as the worker makes it for an attempt.
    logs = tmp_path / "log" / "mirrorbus" / "debian"
    new_attempt_log(logs, "debian", datetime(2026, 1, 1, tzinfo=UTC))
    assert [_mode(p) for p in (tmp_path / "log", logs.parent, logs)] == [0o755] * 3
    # One that exists is left as its owner made it.
    os.chmod(work, 0o750)
    make_dirs(work, 0o755)
    assert _mode(work) == 0o750
