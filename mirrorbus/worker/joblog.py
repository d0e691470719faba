"""Per-attempt job log files in tunasync's layout (TUNASYNC.md §4.5).

``<log_dir>/<name>_<YYYY-MM-DD_HH_MM>.log`` per attempt, a ``latest`` symlink to it, the file
renamed to ``.fail`` (and ``latest`` re-pointed) when the attempt fails, and the newest
``keep`` files of the job kept.  Two fixes over tunasync: a second attempt in the same minute
gets its own file (``..._HH_MM_SS.log``, then ``-2``, ``-3``...) instead of overwriting the
first, and retention only counts files of this job (``debian`` no longer prunes
``debian-security``'s logs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DEFAULT_KEEP = 10


@dataclass(frozen=True, slots=True)
class AttemptLog:
    path: Path
    log_dir: Path

    def mark_failed(self) -> Path:
        """Rename to ``.fail`` and point ``latest`` at it; return the new path."""
        failed = self.path.with_name(self.path.name + ".fail")
        try:
            self.path.rename(failed)
        except FileNotFoundError:
            return self.path
        _point_latest(self.log_dir, failed.name)
        return failed


def _point_latest(log_dir: Path, target: str) -> None:
    link = log_dir / "latest"
    tmp = log_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    tmp.replace(link)  # atomic: readers never see a missing link


_LOG_NAME = re.compile(r"(?P<job>.+)_\d{4}-\d\d-\d\d_\d\d_\d\d(_\d\d)?(-\d+)?\.log(\.fail)?")
"""An attempt's log file name; one pattern for every job (a pattern per job, compiled at each
attempt, missed ``re``'s cache with more than 512 jobs and cost more than the rest)."""


def _own_logs(log_dir: Path, job: str) -> list[Path]:
    try:
        entries = list(log_dir.iterdir())
    except FileNotFoundError:
        return []
    return [
        p for p in entries if (m := _LOG_NAME.fullmatch(p.name)) and m["job"] == job and p.is_file()
    ]


def _names(job: str, local: datetime) -> Iterator[str]:
    """Candidate file stems, tunasync's first; made one at a time, as they are needed."""
    minute = f"{job}_{local:%Y-%m-%d_%H_%M}"
    second = f"{minute}_{local:%S}"
    yield minute
    yield second
    for n in range(2, 1000):
        yield f"{second}-{n}"


def new_attempt_log(log_dir: Path, job: str, now: datetime, keep: int = DEFAULT_KEEP) -> AttemptLog:
    """Create the log file of a new attempt (empty), prune old ones, point ``latest`` at it."""
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    old = sorted(_own_logs(log_dir, job), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[max(keep - 1, 0) :]:
        stale.unlink(missing_ok=True)
    for stem in _names(job, now.astimezone()):
        path = log_dir / f"{stem}.log"
        if path.exists() or path.with_name(path.name + ".fail").exists():
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        _point_latest(log_dir, path.name)
        return AttemptLog(path=path, log_dir=log_dir)
    raise RuntimeError(f"cannot find a free log file name for {job} in {log_dir}")
