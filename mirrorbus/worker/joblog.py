"""Per-attempt job log files in tunasync's layout (docs/tunasync.md §4.5).

``<log_dir>/<name>_<YYYY-MM-DD_HH_MM>.log`` per attempt, a ``latest`` symlink to it, the file
renamed to ``.fail`` (and ``latest`` re-pointed) when the attempt fails, and the newest
``keep`` files of the job kept.  Two fixes over tunasync: a second attempt in the same minute
gets its own file (``..._HH_MM_SS.log``, then ``-2``, ``-3``...) instead of overwriting the
first, and retention only counts files of this job (``debian`` no longer prunes
``debian-security``'s logs).

The name in a file name is the job's name as written (``crates.io-index.git_2026-12-06_10_00.log``,
``linux stable_...``).  Only a name too long to leave room for the suffix in a file name's
255 bytes is cut, with ``~`` and 32 hex digits of its SHA-256 so that it stays its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mirrorbus.dirs import make_dirs

DEFAULT_KEEP = 10

HEADER_PREFIX = "# mirrorbus: "
"""Each line of an attempt's command header starts with this (never rsync's or a job's)."""

_ENV_OPTIONS = ("-e", "--env")
_SECRET_OPTION = re.compile(r"--?[\w-]*(pass|token|secret|api[-_]?key|auth|credential)[\w-]*", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*):[^/@\s]*@", re.I)
HIDDEN = "..."


def _redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` without the secrets it may carry: job logs are read by more people than the
    config (``ctl logs`` with a reader's certificate, often a public web directory).

    Left out: the values of docker's ``-e KEY=VALUE``, of options named like a secret
    (``--password=X``, ``--token X``, ``--api-key=X``) and the password of a URL
    (``rsync://user:X@host/``).  What remains is still the command to run by hand, with the
    secret to put back in.
    """
    shown: list[str] = []
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i > 0 else ""
        if before in _ENV_OPTIONS and "=" in arg:
            arg = arg.split("=", 1)[0] + "=" + HIDDEN
        elif arg.startswith("--env=") and arg.count("=") > 1:
            arg = "--env=" + arg[len("--env=") :].split("=", 1)[0] + "=" + HIDDEN
        elif arg.startswith("-") and "=" in arg and _SECRET_OPTION.fullmatch(arg.split("=")[0]):
            arg = arg.split("=", 1)[0] + "=" + HIDDEN
        elif _SECRET_OPTION.fullmatch(before) and not arg.startswith("-"):
            arg = HIDDEN
        shown.append(_URL_PASSWORD.sub(rf"\g<head>:{HIDDEN}@", arg))
    return shown


def command_header(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    base: Mapping[str, str],
    launched: Sequence[str] | None = None,
) -> str:
    """The lines an attempt's log starts with: the command as a shell would take it, where
    it ran, and the names (never the values) of the variables it got beyond ``base`` (the
    worker's own environment).  ``launched`` is the command actually executed when a docker
    or cgroup launcher wrapped ``argv``.  What operators need when an upstream misbehaves:
    the exact command to run again by hand (secrets left out: :func:`_redacted`)."""
    keys = sorted(k for k, v in env.items() if base.get(k) != v)
    lines = [
        f"command: {shlex.join(_redacted(argv))}",
        f"working dir: {cwd}",
        f"environment set: {' '.join(keys) if keys else '(none)'}",
    ]
    if launched is not None and list(launched) != list(argv):
        lines.append(f"launched as: {shlex.join(_redacted(launched))}")
    return "".join(f"{HEADER_PREFIX}{line}\n" for line in lines)


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
    try:
        os.symlink(target, tmp)
    except FileExistsError:  # left by a worker of this pid that died in between
        tmp.unlink()
        os.symlink(target, tmp)
    tmp.replace(link)  # atomic: readers never see a missing link


_LOG_NAME = re.compile(r"(?P<job>.+)_\d{4}-\d\d-\d\d_\d\d_\d\d(_\d\d)?(-\d+)?\.log(\.fail)?")
"""An attempt's log file name; one pattern for every job (a pattern per job, compiled at each
attempt, missed ``re``'s cache with more than 512 jobs and cost more than the rest)."""


def _listing(log_dir: Path, job: str) -> tuple[list[os.DirEntry[str]], set[str]]:
    """The job's own log files in ``log_dir``, and every name there (one directory read: no
    file is looked at on its own unless there are old logs to prune)."""
    try:
        with os.scandir(log_dir) as it:
            entries = list(it)
    except FileNotFoundError:
        return [], set()
    stem = file_name_of(job)
    own = [
        e
        for e in entries
        if (m := _LOG_NAME.fullmatch(e.name)) and m["job"] == stem and e.is_file()
    ]
    return own, {e.name for e in entries}


_NAME_MAX = 255
_SUFFIX_MAX = len("_2026-12-06_10_00_59-999.log.fail")
_DIGEST = 32


def file_name_of(job: str) -> str:
    """The job's name as its log files spell it: as written, unless its UTF-8 would leave no
    room for the longest suffix in 255 bytes; then the longest prefix that does, with ``~``
    and 32 hex digits of the name's SHA-256."""
    data = job.encode()
    if len(data) + _SUFFIX_MAX <= _NAME_MAX:
        return job
    room = _NAME_MAX - _SUFFIX_MAX - _DIGEST - 1
    head = data[:room].decode(errors="ignore")  # never half a character
    return f"{head}~{hashlib.sha256(data).hexdigest()[:_DIGEST]}"


def _names(job: str, local: datetime) -> Iterator[str]:
    """Candidate file stems, tunasync's first; made one at a time, as they are needed."""
    minute = f"{file_name_of(job)}_{local:%Y-%m-%d_%H_%M}"
    second = f"{minute}_{local:%S}"
    yield minute
    yield second
    for n in range(2, 1000):
        yield f"{second}-{n}"


def new_attempt_log(log_dir: Path, job: str, now: datetime, keep: int = DEFAULT_KEEP) -> AttemptLog:
    """Create the log file of a new attempt (empty), prune old ones, point ``latest`` at it."""
    make_dirs(log_dir, 0o755)
    own, names = _listing(log_dir, job)
    if len(own) >= keep:  # the new file makes one more than ``keep``: the oldest go
        own.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for stale in own[max(keep - 1, 0) :]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale.path)
            names.discard(stale.name)
    for stem in _names(job, now.astimezone()):
        name = f"{stem}.log"
        if name in names or f"{name}.fail" in names:
            continue
        path = log_dir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        _point_latest(log_dir, name)
        return AttemptLog(path=path, log_dir=log_dir)
    raise RuntimeError(f"cannot find a free log file name for {job} in {log_dir}")
