"""Which provider runs a job: ``command``, ``rsync`` or ``two-stage-rsync``.

Its own module so that the providers build on :mod:`.base` and nothing builds on them but
this choice (no import circle between the providers and the chooser).
"""

from __future__ import annotations

from collections.abc import Mapping

from mirrorbus.config.worker import MirrorConfig, WorkerConfig
from mirrorbus.worker.joblog import AttemptLog
from mirrorbus.worker.providers.base import AttemptOutcome, Provider
from mirrorbus.worker.providers.command import CommandProvider
from mirrorbus.worker.providers.rsync import RsyncProvider, TwoStageRsyncProvider


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
    if mirror.provider == "command":
        return CommandProvider(mirror, base_env)
    if mirror.provider == "rsync":
        return RsyncProvider(mirror, config.rsync_options)
    if mirror.provider == "two-stage-rsync":
        return TwoStageRsyncProvider(mirror)
    return UnsupportedProvider(mirror)
