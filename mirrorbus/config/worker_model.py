"""The typed, frozen result of loading a worker config (see :mod:`mirrorbus.config.worker`).

Everything here is plain data: every key of tunasync's worker config (docs/tunasync.md §3.1) with
its tunasync default, already checked, resolved and converted to the unit the runtime wants
(``timedelta`` for intervals and timeouts, ``Path`` for directories, compiled patterns, argv
tuples).  The runtime never looks at raw TOML and never has to re-validate.

Instances compare by value, so a config reload can diff old and new mirrors with ``==``
(docs/tunasync.md §4.9).  ``MirrorConfig.origin`` (where the job was defined) is left out of the
comparison so that moving a job to another include file does not restart it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from mirrorbus.config.bus import BusConfig

Provider = Literal["command", "rsync", "two-stage-rsync"]
Role = Literal["master", "slave"]

PROVIDERS: tuple[Provider, ...] = ("command", "rsync", "two-stage-rsync")
STAGE1_PROFILES: tuple[str, ...] = ("debian", "debian-oldstyle")

DEFAULT_CONCURRENT = 10
"""Used when ``[global] concurrent`` is 0 or missing (tunasync would never start a job)."""
DEFAULT_RETRY = 2
"""tunasync's ``defaultMaxRetry``: total attempts per run when no ``retry`` is set."""
DEFAULT_KEEP_LOGS = 10
"""tunasync's log retention: the newest 10 log files of a job."""
DEFAULT_RSYNC_TIMEOUT = 120
"""rsync ``--timeout=`` seconds when ``rsync_timeout`` is 0 or missing."""

Argv = tuple[str, ...]


def _empty_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CgroupConfig:
    """``[cgroup]``; ``base_path`` and ``subsystem`` are kept but unused, as in tunasync."""

    enable: bool = False
    group: str = ""
    base_path: str = ""
    subsystem: str = ""


@dataclass(frozen=True, slots=True)
class ZfsConfig:
    """``[zfs]``; ``zpool`` only appears in help messages."""

    enable: bool = False
    zpool: str = ""


@dataclass(frozen=True, slots=True)
class BtrfsSnapshotConfig:
    """``[btrfs_snapshot]``; a mirror's snapshot defaults to ``snapshot_path / name``."""

    enable: bool = False
    snapshot_path: Path | None = None


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """``[docker]``: ``volumes``/``options`` apply to every docker job, before the mirror's."""

    enable: bool = False
    volumes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IncludeConfig:
    """``[include]``: the raw pattern and the files it matched, in the order they were read."""

    include_mirrors: str = ""
    files: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    """One job: a leaf of the ``[[mirrors]]`` tree, merged with its ancestors and globals.

    Derived values follow docs/tunasync.md §3.1 "Derived per-mirror values": ``interval``,
    ``retry`` and ``timeout`` already fall back to ``[global]``; ``exec_on_success`` is the
    mirror's list or else the global one (the ``_extra`` lists are kept apart because the
    hooks run them in a different order); ``success_exit_codes`` is the merged, de-duplicated
    list.  Keys that only matter to other providers are stored anyway, unused.
    """

    name: str
    provider: Provider
    upstream: str
    command: Argv
    interval: timedelta
    retry: int
    timeout: timedelta | None
    working_dir: Path
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=_empty_env)
    size_pattern: re.Pattern[str] | None = None
    fail_on_match: re.Pattern[str] | None = None
    success_exit_codes: tuple[int, ...] = ()
    role: Role = "master"
    is_master: bool = True
    mirror_subdir: str = ""
    exec_on_success: tuple[Argv, ...] = ()
    exec_on_failure: tuple[Argv, ...] = ()
    exec_on_success_extra: tuple[Argv, ...] = ()
    exec_on_failure_extra: tuple[Argv, ...] = ()
    use_ipv4: bool = False
    use_ipv6: bool = False
    exclude_file: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    rsync_no_timeout: bool = False
    rsync_timeout: int = DEFAULT_RSYNC_TIMEOUT
    rsync_options: tuple[str, ...] = ()
    rsync_override: tuple[str, ...] = ()
    rsync_override_only: bool = False
    stage1_profile: str = ""
    memory_limit: int | None = None
    docker_image: str = ""
    docker_volumes: tuple[str, ...] = ()
    docker_options: tuple[str, ...] = ()
    snapshot_path: Path | None = None
    jitter: timedelta = timedelta(0)
    """mirrorbus: a random delay of up to this much is added to every scheduled run."""
    retry_backoff: timedelta = timedelta(0)
    keep_logs: int = DEFAULT_KEEP_LOGS
    """Log files kept per job (tunasync keeps 10; ``keep_logs``, mirrorbus only)."""
    """mirrorbus: wait this long before the 2nd attempt of a run, doubling after each."""
    upstream_host: str = ""
    """The upstream's host name (for ``[upstream_limits]``); "" when it has none."""
    desc: str = field(default="", compare=False)
    """mirrorbus: what mirrorz.json says of the job (``desc``); not compared, so a reload
    that only changes it re-announces the job without restarting it."""
    help: str = field(default="", compare=False)
    """mirrorbus: the job's help page for mirrorz.json (``help``), like ``desc``."""
    origin: str = field(default="", compare=False)
    """Where the job was defined, e.g. ``worker.toml: mirrors[1].mirrors[0] (ubuntu)``."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """A whole worker config file (plus its includes), checked and resolved.

    ``log_dir`` is the raw ``[global]`` template; each mirror carries its rendered
    ``log_dir``.  ``warnings`` lists what was accepted but is worth telling the operator
    (unknown keys, ``[manager]``/``[server]`` being unused, ignored options).
    """

    path: Path
    name: str
    mirror_dir: Path | None
    log_dir: str
    concurrent: int
    interval: timedelta
    retry: int
    timeout: timedelta | None
    bus: BusConfig
    mirrors: tuple[MirrorConfig, ...]
    warnings: tuple[str, ...] = ()
    rsync_options: tuple[str, ...] = ()
    exec_on_success: tuple[Argv, ...] = ()
    exec_on_failure: tuple[Argv, ...] = ()
    dangerous_global_success_exit_codes: tuple[int, ...] = ()
    dangerous_global_rsync_success_exit_codes: tuple[int, ...] = ()
    cgroup: CgroupConfig = CgroupConfig()
    zfs: ZfsConfig = ZfsConfig()
    btrfs_snapshot: BtrfsSnapshotConfig = BtrfsSnapshotConfig()
    docker: DockerConfig = DockerConfig()
    include: IncludeConfig = IncludeConfig()
    upstream_limit: int = 0
    """mirrorbus: runs at once per upstream host (0: no limit) unless ``upstream_limits``
    names the host."""
    upstream_limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """mirrorbus: ``[upstream_limits]``, host name -> runs at once from that host."""

    def host_limit(self, host: str) -> int:
        """How many runs may pull from ``host`` at once (0: no limit)."""
        return self.upstream_limits.get(host, self.upstream_limit) if host else 0

    def mirror(self, name: str) -> MirrorConfig:
        """The job called ``name``; ``KeyError`` if there is none."""
        for m in self.mirrors:
            if m.name == name:
                return m
        raise KeyError(name)
