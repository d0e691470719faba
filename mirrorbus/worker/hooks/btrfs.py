"""The btrfs snapshot hook: publish a consistent copy after each success (docs/tunasync.md §6.4).

``[btrfs_snapshot] enable``.  The working dir is a Btrfs subvolume (created by ``pre_job`` when
missing, after making its parent directories); after a successful run the previous snapshot
is deleted and a new **writable** snapshot of the working dir is taken at the mirror's
snapshot path (``snapshot_path`` or ``[btrfs_snapshot] snapshot_path/<name>``).  Serving the
snapshot instead of the working dir means readers never see a half-synced tree.  A failed run
keeps the old snapshot.

Everything goes through the ``btrfs`` command (found on ``PATH``), so the commands are exactly::

    btrfs subvolume create <workdir>          # pre_job, workdir missing
    btrfs subvolume show <path>               # "is it a subvolume?"
    btrfs subvolume delete <snapshot>         # post_success, old snapshot
    btrfs subvolume snapshot <workdir> <snapshot>
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import anyio

from mirrorbus.config.worker_model import MirrorConfig, WorkerConfig
from mirrorbus.dirs import make_dirs
from mirrorbus.errors import HookError
from mirrorbus.worker.hooks.base import AttemptContext, Hook

log = logging.getLogger(__name__)


async def btrfs(*args: str) -> tuple[int, str]:
    """Run ``btrfs args...``; the exit code and its (stripped) output."""
    exe = shutil.which("btrfs")
    if exe is None:
        raise HookError("[btrfs_snapshot] is enabled but no btrfs executable is on PATH")
    try:
        result = await anyio.run_process([exe, *args], check=False, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise HookError(f"cannot run btrfs: {exc.strerror or exc}") from exc
    return result.returncode, result.stdout.decode(errors="replace").strip()


async def is_subvolume(path: Path) -> bool:
    code, _ = await btrfs("subvolume", "show", str(path))
    return code == 0


async def _must(*args: str) -> None:
    code, output = await btrfs(*args)
    if code != 0:
        raise HookError(f"btrfs {' '.join(args)} failed (exit {code}): {output}")


class BtrfsSnapshotHook(Hook):
    name = "btrfs_snapshot"

    def __init__(self, mirror: MirrorConfig, worker: WorkerConfig) -> None:
        self.snapshot = mirror.snapshot_path

    async def pre_job(self, ctx: AttemptContext) -> None:
        workdir = ctx.mirror.working_dir
        if not workdir.exists():
            log.info("job [%s]: creating btrfs subvolume %s", ctx.mirror.name, workdir)
            try:  # btrfs does not make parents (tunasync then fails every run)
                make_dirs(workdir.parent, 0o755)
            except OSError as exc:
                raise HookError(f"Error making dir {workdir.parent}: {exc.strerror}") from exc
            await _must("subvolume", "create", str(workdir))
        elif not await is_subvolume(workdir):
            raise HookError(f"path {workdir} exists but isn't a Btrfs subvolume")

    async def post_success(self, ctx: AttemptContext) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            raise HookError(
                "[btrfs_snapshot] is enabled but neither snapshot_path nor the mirror's "
                "snapshot_path is set"
            )
        if snapshot.exists():
            if not await is_subvolume(snapshot):
                raise HookError(f"path {snapshot} exists and isn't a Btrfs snapshot")
            await _must("subvolume", "delete", str(snapshot))
        workdir = ctx.mirror.working_dir
        await _must("subvolume", "snapshot", str(workdir), str(snapshot))
        log.info("job [%s]: snapshot %s of %s", ctx.mirror.name, snapshot, workdir)
