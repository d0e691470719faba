"""Per-attempt job logs in tunasync's layout (docs/tunasync.md §4.5), against a real directory."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mirrorbus.worker.joblog import DEFAULT_KEEP, new_attempt_log

NOW = datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC)


def minute_stem(job: str, now: datetime) -> str:
    return f"{job}_{now.astimezone():%Y-%m-%d_%H_%M}"


def age(path: Path, seconds_ago: float) -> None:
    """Give ``path`` an mtime ``seconds_ago`` in the past (retention sorts by mtime)."""
    t = datetime.now().timestamp() - seconds_ago
    os.utime(path, (t, t))


def test_log_file_name_layout_and_latest_link(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs" / "debian"  # created on demand
    log = new_attempt_log(log_dir, "debian", NOW)
    assert log.path.parent == log_dir
    assert log.path.name == f"{minute_stem('debian', NOW)}.log"
    assert re.fullmatch(r"debian_\d{4}-\d\d-\d\d_\d\d_\d\d\.log", log.path.name)
    assert log.path.is_file()
    assert log.path.read_bytes() == b""
    assert (log.path.stat().st_mode & 0o777) == 0o644 & ~current_umask()
    latest = log_dir / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == log.path.name  # relative target
    assert latest.resolve() == log.path.resolve()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_attempt_in_the_same_minute_gets_its_own_file(tmp_path: Path) -> None:
    first = new_attempt_log(tmp_path, "debian", NOW)
    first.path.write_text("attempt 1\n")
    second = new_attempt_log(tmp_path, "debian", NOW + timedelta(seconds=1))
    third = new_attempt_log(tmp_path, "debian", NOW + timedelta(seconds=1))
    paths = {first.path, second.path, third.path}
    assert len(paths) == 3
    assert first.path.read_text() == "attempt 1\n"  # never overwritten
    for log in (second, third):
        assert log.path.name.startswith(minute_stem("debian", NOW))
        assert log.path.name.endswith(".log")
    assert os.readlink(tmp_path / "latest") == third.path.name


def test_a_failed_log_does_not_free_its_name(tmp_path: Path) -> None:
    first = new_attempt_log(tmp_path, "debian", NOW)
    first.path.write_text("failed attempt\n")
    failed = first.mark_failed()
    second = new_attempt_log(tmp_path, "debian", NOW)
    assert second.path != first.path
    assert failed.read_text() == "failed attempt\n"
    assert second.path.read_bytes() == b""


def test_mark_failed_renames_and_repoints_latest(tmp_path: Path) -> None:
    log = new_attempt_log(tmp_path, "debian", NOW)
    log.path.write_text("rsync error: 23\n")
    failed = log.mark_failed()
    assert failed.name == log.path.name + ".fail"
    assert not log.path.exists()
    assert failed.read_text() == "rsync error: 23\n"
    latest = tmp_path / "latest"
    assert os.readlink(latest) == failed.name
    assert latest.read_text() == "rsync error: 23\n"
    # no temporary link left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["latest", failed.name])


def test_mark_failed_of_a_vanished_file_does_not_raise(tmp_path: Path) -> None:
    log = new_attempt_log(tmp_path, "debian", NOW)
    log.path.unlink()
    assert log.mark_failed() == log.path


def test_retention_keeps_the_newest_ten_of_this_job_only(tmp_path: Path) -> None:
    start = NOW - timedelta(days=30)
    made: list[Path] = []
    other: list[Path] = []
    for i in range(15):
        when = start + timedelta(hours=i)
        log = new_attempt_log(tmp_path, "debian", when)
        age(log.path, 10_000 - i * 100)  # older attempts have older mtimes
        if i % 3 == 0:
            made.append(log.mark_failed())
        else:
            made.append(log.path)
        sec = new_attempt_log(tmp_path, "debian-security", when)
        age(sec.path, 10_000 - i * 100)
        other.append(sec.path)
    mine = sorted(p for p in tmp_path.iterdir() if p.name.startswith("debian_"))
    assert len(mine) == DEFAULT_KEEP
    assert set(mine) == set(made[-DEFAULT_KEEP:])  # the newest ten, failed ones included
    theirs = sorted(p for p in tmp_path.iterdir() if p.name.startswith("debian-security_"))
    assert len(theirs) == DEFAULT_KEEP
    assert set(theirs) == set(other[-DEFAULT_KEEP:])
    # debian's pruning never touched debian-security: create more debian logs only
    for i in range(12):
        log = new_attempt_log(tmp_path, "debian", NOW + timedelta(minutes=i))
        age(log.path, 100 - i)
    assert {p for p in tmp_path.iterdir() if p.name.startswith("debian-security_")} == set(theirs)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("debian_")]) == DEFAULT_KEEP


def test_retention_leaves_unrelated_files_alone(tmp_path: Path) -> None:
    keepers = [tmp_path / "debian.conf", tmp_path / "debian_notes.txt", tmp_path / "README"]
    for p in keepers:
        p.write_text("x")
        age(p, 1_000_000)
    for i in range(DEFAULT_KEEP + 3):
        log = new_attempt_log(tmp_path, "debian", NOW + timedelta(minutes=i))
        age(log.path, 1000 - i)
    for p in keepers:
        assert p.read_text() == "x"


def test_retention_with_a_smaller_keep(tmp_path: Path) -> None:
    logs = []
    for i in range(5):
        log = new_attempt_log(tmp_path, "j", NOW + timedelta(minutes=i), keep=2)
        age(log.path, 100 - i)
        logs.append(log.path)
    assert {p for p in tmp_path.iterdir() if p.name != "latest"} == set(logs[-2:])
    assert os.readlink(tmp_path / "latest") == logs[-1].name
