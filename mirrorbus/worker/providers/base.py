"""What every provider is: the outcome of one attempt, the protocol, tunasync's job environment.

A provider executes and judges one attempt of a job (:mod:`.command`, :mod:`.rsync`);
:func:`mirrorbus.worker.providers.choose.make_provider` picks the provider of a job.  The
hooks use :func:`tunasync_environment` too: exec hooks see the same ``TUNASYNC_*`` variables
as the job (docs/tunasync.md §2.5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mirrorbus.config.worker import MirrorConfig
from mirrorbus.worker.joblog import AttemptLog


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    ok: bool
    exit_code: int | None
    error: str = ""
    size: str = ""


class Provider(Protocol):
    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome: ...


def read_log(path: Path) -> str:
    """The attempt's log as text ("" when it does not exist), to match patterns in."""
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
