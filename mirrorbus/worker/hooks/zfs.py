"""The zfs hook: a job only runs when its working dir is a mounted dataset (docs/tunasync.md §6.3).

``[zfs] enable``.  Before each run (``pre_job``) the working dir must exist and be a mount
point, checked with ``mountpoint -q <dir>`` as tunasync does; otherwise the run fails and the
log says how to create the dataset.  The hook never creates datasets or snapshots itself: a sync
into a plain directory on the root filesystem, where the operator expected a dataset, is the
mistake it exists to prevent.
"""

from __future__ import annotations

import logging
import os
import shutil

import anyio

from mirrorbus.config.worker_model import MirrorConfig, WorkerConfig
from mirrorbus.errors import HookError
from mirrorbus.worker.hooks.base import AttemptContext, Hook

log = logging.getLogger(__name__)


def _quoted(text: str) -> str:
    """Always in single quotes, as tunasync printed it; a quote inside is closed and reopened."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def help_text(mirror: MirrorConfig, zpool: str) -> str:
    """tunasync's advice on how to make the missing dataset, as commands that can be pasted
    into a shell whatever the job's name holds (a quote, a space)."""
    dataset = _quoted(f"{zpool}/{mirror.name.lower()}")
    workdir = _quoted(str(mirror.working_dir))
    lines = [
        "You may create the ZFS dataset with:",
        f"    zfs create {dataset}",
        f"    zfs set mountpoint={workdir} {dataset}",
    ]
    if os.getuid() != 0:
        lines.append(f"    chown {os.getuid()} {workdir}")
    return "\n".join(lines)


class ZfsHook(Hook):
    name = "zfs"

    def __init__(self, mirror: MirrorConfig, worker: WorkerConfig) -> None:
        self.zpool = worker.zfs.zpool

    async def pre_job(self, ctx: AttemptContext) -> None:
        workdir = ctx.mirror.working_dir
        if not workdir.is_dir():
            log.info("%s", help_text(ctx.mirror, self.zpool))
            raise HookError(f"working directory {workdir} does not exist")
        mountpoint = shutil.which("mountpoint") or "mountpoint"
        try:
            result = await anyio.run_process([mountpoint, "-q", str(workdir)], check=False)
        except OSError as exc:
            raise HookError(f"cannot run mountpoint: {exc.strerror or exc}") from exc
        if result.returncode != 0:
            log.info("%s", help_text(ctx.mirror, self.zpool))
            raise HookError(f"{workdir} is not a mount point")
