"""Which hooks a job gets, in tunasync's attach order (docs/tunasync.md §4.1, §6).

Its own module so that the system hooks build on :mod:`.base` and only this choice builds on
them (no import circle between the base and the hooks).
"""

from __future__ import annotations

from mirrorbus.config.worker import MirrorConfig, WorkerConfig
from mirrorbus.worker.hooks.base import ExecHook, Hook
from mirrorbus.worker.hooks.btrfs import BtrfsSnapshotHook
from mirrorbus.worker.hooks.cgroup import cgroup_hook, worker_cgroups
from mirrorbus.worker.hooks.docker import DockerHook
from mirrorbus.worker.hooks.zfs import ZfsHook


def build_hooks(mirror: MirrorConfig, worker: WorkerConfig) -> list[Hook]:
    """The hooks of a job, in tunasync's attach order.

    Raises :class:`~mirrorbus.errors.ConfigError` when ``[cgroup]`` is enabled but cgroups
    cannot be used here (checked once per worker), so the worker does not start.
    """
    hooks: list[Hook] = []
    if worker.cgroup.enable:
        worker_cgroups(worker)  # fail at start-up, even if every job uses docker
    if worker.zfs.enable:
        hooks.append(ZfsHook(mirror, worker))
    if worker.btrfs_snapshot.enable:
        hooks.append(BtrfsSnapshotHook(mirror, worker))
    if worker.docker.enable and mirror.docker_image:
        hooks.append(DockerHook(mirror, worker))
    elif worker.cgroup.enable:
        hooks.append(cgroup_hook(mirror, worker))
    hooks += [ExecHook(argv, "success") for argv in mirror.exec_on_success]
    hooks += [ExecHook(argv, "success") for argv in mirror.exec_on_success_extra]
    hooks += [ExecHook(argv, "failure") for argv in mirror.exec_on_failure]
    hooks += [ExecHook(argv, "failure") for argv in mirror.exec_on_failure_extra]
    return hooks
