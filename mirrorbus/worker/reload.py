"""What changed between two worker configs, for ``reload`` (SIGHUP or ``ctl reload``).

tunasync diffs only the ``[[mirrors]]`` and builds new jobs with the *old* global settings
(docs/tunasync.md §4.9).  Here global settings take effect too: a change of the settings every job
is built from (global ``rsync_options``, ``[cgroup]``, ``[docker]``, ``[zfs]``,
``[btrfs_snapshot]``) counts as a modification of every job, and ``concurrent`` applies at once.
A job's config is compared by value, so credentials never make it look modified (a tunasync
quirk).
"""

from __future__ import annotations

from dataclasses import dataclass

from mirrorbus.config.worker import MirrorConfig, WorkerConfig


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    added: tuple[MirrorConfig, ...]
    removed: tuple[str, ...]
    modified: tuple[MirrorConfig, ...]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.modified)} modified"
        )


def _shared(config: WorkerConfig) -> tuple[object, ...]:
    return (config.rsync_options, config.cgroup, config.docker, config.zfs, config.btrfs_snapshot)


def diff(old: WorkerConfig, new: WorkerConfig) -> ConfigDiff:
    before = {m.name: m for m in old.mirrors}
    after = {m.name: m for m in new.mirrors}
    everything = _shared(old) != _shared(new)
    return ConfigDiff(
        added=tuple(m for name, m in after.items() if name not in before),
        removed=tuple(name for name in before if name not in after),
        modified=tuple(
            m for name, m in after.items() if name in before and (everything or before[name] != m)
        ),
    )
