"""Providers: how one attempt of a job is executed and judged.

:func:`make_provider` picks the provider of a job; ``rsync`` and ``two-stage-rsync`` live in
:mod:`mirrorbus.worker.rsync`.

The ``command`` provider runs the configured argv (shlex-split, no shell) in the job's working
directory (made by the run: :func:`mirrorbus.worker.run.prepare_attempt`) with tunasync's
``TUNASYNC_*`` environment (docs/tunasync.md §5.1, §10.4), output to the attempt's log file after
the command header (the argv, working dir and environment keys set, which the patterns below
never see).
Success is exit 0 or an allowed exit code, then no ``fail_on_match`` hit; the size is group 1
of the last ``size_pattern`` match in the log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from mirrorbus.config.worker import MirrorConfig, WorkerConfig
from mirrorbus.worker.joblog import AttemptLog
from mirrorbus.worker.process import run_process


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    ok: bool
    exit_code: int | None
    error: str = ""
    size: str = ""


class Provider(Protocol):
    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome: ...


def last_match(pattern: re.Pattern[str], text: str) -> str:
    """Group 1 of the last match of ``pattern`` in ``text`` ("" when none)."""
    found = ""
    for match in pattern.finditer(text):
        found = match.group(1) if pattern.groups else match.group(0)
    return found


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tunasync_environment(
    mirror: MirrorConfig, log_file: Path | str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The worker's environment (``base``, default ``os.environ``) plus tunasync's
    ``TUNASYNC_*`` variables of a job (§2.5); command jobs add their ``env`` on top, exec hooks
    their exit status."""
    env = dict(os.environ if base is None else base)
    env.update(
        TUNASYNC_MIRROR_NAME=mirror.name,
        TUNASYNC_WORKING_DIR=str(mirror.working_dir),
        TUNASYNC_UPSTREAM_URL=mirror.upstream,
        TUNASYNC_LOG_DIR=str(mirror.log_dir),
        TUNASYNC_LOG_FILE=str(log_file),
    )
    return env


class CommandProvider:
    def __init__(self, mirror: MirrorConfig, base_env: Mapping[str, str] | None = None) -> None:
        self.mirror = mirror
        # The worker's environment, read once by the worker and shared by its jobs (None:
        # os.environ at each attempt).  Reading os.environ decodes every variable again, a
        # good part of an attempt's own cost, and a copy per job costs memory for every job.
        self._base = base_env

    def environment(self, log_file: Path) -> dict[str, str]:
        env = tunasync_environment(self.mirror, log_file, self._base)
        env.update(self.mirror.env)
        return env

    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome:
        m = self.mirror  # the run made its working dir (run.prepare_attempt)
        with log.path.open("ab", buffering=0) as output:
            result = await run_process(
                m.command,
                cwd=m.working_dir,
                env=self.environment(log.path),
                output=output,
                timeout=None if m.timeout is None else m.timeout.total_seconds(),
                header=True,
            )
        code = result.exit_code
        allowed = code == 0 or (code is not None and code in m.success_exit_codes)
        if not allowed or result.timed_out:
            return AttemptOutcome(ok=False, exit_code=code, error=result.error)
        if m.fail_on_match is None and m.size_pattern is None:
            return AttemptOutcome(ok=True, exit_code=code)
        # The command header is ours: a pattern that happens to match the command itself
        # must not fail (or size) the run.
        text = (await anyio.to_thread.run_sync(_read_log, log.path)).replace(result.header, "", 1)
        if m.fail_on_match is not None:
            hits = len(m.fail_on_match.findall(text))
            if hits:
                return AttemptOutcome(
                    ok=False, exit_code=code, error=f"Fail-on-match regexp found {hits} matches"
                )
        size = last_match(m.size_pattern, text) if m.size_pattern is not None else ""
        return AttemptOutcome(ok=True, exit_code=code, size=size)


class UnsupportedProvider:
    """A provider this release cannot run yet: the job loads and shows up, each attempt fails
    with a clear error instead of the whole worker refusing to start."""

    def __init__(self, mirror: MirrorConfig) -> None:
        self.mirror = mirror

    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome:
        return AttemptOutcome(
            ok=False,
            exit_code=None,
            error=f"provider '{self.mirror.provider}' is not supported by this release yet",
        )


def make_provider(
    mirror: MirrorConfig, config: WorkerConfig, base_env: Mapping[str, str] | None = None
) -> Provider:
    """The provider that runs ``mirror``; ``config`` supplies ``[global] rsync_options``,
    ``base_env`` the worker's environment for command jobs (default: ``os.environ`` as each
    attempt starts)."""
    # Imported here: the rsync module builds on this one (AttemptOutcome), so a module-level
    # import would be circular.
    from mirrorbus.worker.rsync import RsyncProvider, TwoStageRsyncProvider

    if mirror.provider == "command":
        return CommandProvider(mirror, base_env)
    if mirror.provider == "rsync":
        return RsyncProvider(mirror, config.rsync_options)
    if mirror.provider == "two-stage-rsync":
        return TwoStageRsyncProvider(mirror)
    return UnsupportedProvider(mirror)
