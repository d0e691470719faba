"""The ``command`` provider: the configured argv, judged by its exit code and the log.

It runs the argv (shlex-split, no shell) in the job's working directory (made by the run:
:func:`mirrorbus.worker.run.prepare_attempt`) with tunasync's ``TUNASYNC_*`` environment
(docs/tunasync.md §5.1, §10.4), output to the attempt's log file after the command header (the
argv, working dir and environment keys set, which the patterns below never see).
Success is exit 0 or an allowed exit code, then no ``fail_on_match`` hit; the size is group 1
of the last ``size_pattern`` match in the log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import anyio

from mirrorbus.config.worker import MirrorConfig
from mirrorbus.worker.joblog import AttemptLog
from mirrorbus.worker.process import run_process
from mirrorbus.worker.providers.base import AttemptOutcome, read_log, tunasync_environment


def last_match(pattern: re.Pattern[str], text: str) -> str:
    """Group 1 of the last match of ``pattern`` in ``text`` ("" when none)."""
    found = ""
    for match in pattern.finditer(text):
        found = match.group(1) if pattern.groups else match.group(0)
    return found


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
        text = (await anyio.to_thread.run_sync(read_log, log.path)).replace(result.header, "", 1)
        if m.fail_on_match is not None:
            hits = len(m.fail_on_match.findall(text))
            if hits:
                return AttemptOutcome(
                    ok=False, exit_code=code, error=f"Fail-on-match regexp found {hits} matches"
                )
        size = last_match(m.size_pattern, text) if m.size_pattern is not None else ""
        return AttemptOutcome(ok=True, exit_code=code, size=size)
