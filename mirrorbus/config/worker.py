"""Load a tunasync worker config (TOML) into a checked, frozen :class:`WorkerConfig`.

The file format is tunasync's (docs/tunasync.md §3.1): same sections, keys, defaults and meaning,
nested ``[[mirrors.mirrors]]`` inheritance and ``[include] include_mirrors``, so an existing
``worker.conf`` loads unchanged.  A ``[bus]`` section says how to reach NATS (read as every
file's is, :mod:`mirrorbus.config.bus`);
``[manager]`` and ``[server]`` are accepted and reported as unused (the bus replaces them).

Where we differ from tunasync, on purpose:

* Every error is one :class:`~mirrorbus.errors.ConfigError` line naming the file, the job
  (``mirrors[2] (debian)``) and the key, found at load time.  tunasync panics at start-up
  for a bad regex, command line, upstream or override, and finds a bad ``stage1_profile``
  only when the job runs.  Duplicate job names are an error (tunasync silently kept the
  last one), and so is a job without a name.
* Unknown keys are a warning in :attr:`WorkerConfig.warnings`, not silently ignored.
* ``concurrent = 0`` or missing means 10 (:data:`DEFAULT_CONCURRENT`); in tunasync it
  blocks every scheduled run forever.
* Relative paths (``mirror_dir``, ``log_dir``, ``exclude_file``, ``snapshot_path``, the
  ``[bus]`` certificate files and the ``include_mirrors`` glob) are taken from the main
  config file's directory (also for mirrors from included files), not from the process's
  working directory: under systemd the cwd is ``/``, and a config should mean the same
  thing whoever starts the worker.  A job with neither a log directory nor a working
  directory is an error instead of writing into the cwd.
* ``log_dir`` is rendered as plain text (no HTML escaping); a child mirror can reset an
  inherited value; siblings never share an ``env`` table (see
  :mod:`mirrorbus.config.worker_mirrors`).

The loader is pure: it reads the config and include files and nothing else.
"""

from __future__ import annotations

import glob
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

from mirrorbus.config.bus import bus_section
from mirrorbus.config.report import check_report
from mirrorbus.config.schema import (
    BTRFS_KEYS,
    CGROUP_KEYS,
    DOCKER_KEYS,
    GLOBAL_KEYS,
    INCLUDE_KEYS,
    ZFS_KEYS,
    Checked,
    Where,
    read_toml,
    resolve,
    section,
    unknown_key,
)
from mirrorbus.config.worker_mirrors import Defaults, Leaf, build_mirror, flatten
from mirrorbus.config.worker_mirrors import split_command as _split
from mirrorbus.config.worker_model import (
    DEFAULT_CONCURRENT,
    DEFAULT_KEEP_LOGS,
    DEFAULT_RETRY,
    BtrfsSnapshotConfig,
    CgroupConfig,
    DockerConfig,
    IncludeConfig,
    MirrorConfig,
    WorkerConfig,
    ZfsConfig,
)
from mirrorbus.errors import ConfigError, InvalidName
from mirrorbus.events.subjects import check_name

__all__ = [
    "DEFAULT_CONCURRENT",
    "DEFAULT_RETRY",
    "BtrfsSnapshotConfig",
    "CgroupConfig",
    "DockerConfig",
    "IncludeConfig",
    "MirrorConfig",
    "WorkerConfig",
    "ZfsConfig",
    "check_report",
    "load_worker_config",
]

_SECTIONS = frozenset(
    {
        "global",
        "bus",
        "cgroup",
        "zfs",
        "btrfs_snapshot",
        "docker",
        "include",
        "mirrors",
        "upstream_limits",
    }
)
_UNUSED = {"manager": "the bus replaces it", "server": "workers take commands from the bus"}


def load_worker_config(path: Path) -> WorkerConfig:
    """Read, check and resolve the worker config at ``path``.

    Raises :class:`ConfigError` (one line: file, job, key, problem) for anything that would
    stop a job from running; collects softer findings in ``WorkerConfig.warnings``.

    >>> load_worker_config(Path("examples/worker.toml")).concurrent
    2

    The error of a file that does not load carries the warnings found before it, often its
    cause (``[globl]`` for ``[global]``, then "name: missing"), for the CLI to show first.
    """
    warnings: list[str] = []
    try:
        return _load_worker_config(path, warnings)
    except ConfigError as exc:
        exc.warnings = tuple(warnings)
        raise


def _load_worker_config(path: Path, warnings: list[str]) -> WorkerConfig:
    doc = read_toml(path)
    base = path.absolute().parent
    for key in doc:
        if key in _UNUSED:
            warnings.append(f"{path}: [{key}] is not used by mirrorbus ({_UNUSED[key]})")
        elif key not in _SECTIONS:
            warnings.append(unknown_key(Where(path, None), key, _SECTIONS, "section or key"))

    g = section(doc, "global", GLOBAL_KEYS, path, warnings)
    gw = Where(path, "[global]")
    name = g.text("name")
    if not name:
        raise gw.error("name", "missing: the worker needs a name")
    try:
        check_name(name, "worker name")
    except InvalidName as exc:
        raise gw.error("name", str(exc)) from None

    mirror_dir = resolve(base, g.text("mirror_dir")) if g.text("mirror_dir") else None
    btrfs = _btrfs(section(doc, "btrfs_snapshot", BTRFS_KEYS, path, warnings), base)
    defaults = Defaults(
        base_dir=base,
        mirror_dir=mirror_dir,
        log_dir=g.text("log_dir"),
        interval=g.number("interval"),
        retry=g.integer("retry") or DEFAULT_RETRY,
        timeout=g.integer("timeout"),
        exec_on_success=tuple(_split(c, gw, "exec_on_success") for c in g.texts("exec_on_success")),
        exec_on_failure=tuple(_split(c, gw, "exec_on_failure") for c in g.texts("exec_on_failure")),
        success_exit_codes=g.integers("dangerous_global_success_exit_codes"),
        rsync_success_exit_codes=g.integers("dangerous_global_rsync_success_exit_codes"),
        snapshot_path=btrfs.snapshot_path,
        jitter=g.number("jitter"),
        retry_backoff=g.number("retry_backoff"),
        keep_logs=g.integer("keep_logs") if "keep_logs" in g.values else DEFAULT_KEEP_LOGS,
    )
    bus = bus_section(doc, path, warnings)
    cgroup = _cgroup(section(doc, "cgroup", CGROUP_KEYS, path, warnings))
    zfs = _zfs(section(doc, "zfs", ZFS_KEYS, path, warnings))
    docker = _docker(section(doc, "docker", DOCKER_KEYS, path, warnings))
    include = section(doc, "include", INCLUDE_KEYS, path, warnings)
    leaves = flatten(doc.get("mirrors", []), path, warnings)
    files = _include_files(include.text("include_mirrors"), base, path, warnings)
    for file in files:
        leaves.extend(_included_leaves(file, warnings))
    mirrors = _build_all(leaves, defaults, warnings)

    return WorkerConfig(
        path=path.absolute(),
        name=name,
        mirror_dir=mirror_dir,
        log_dir=g.text("log_dir"),
        concurrent=g.integer("concurrent") or DEFAULT_CONCURRENT,
        interval=timedelta(minutes=defaults.interval),
        retry=defaults.retry,
        timeout=timedelta(seconds=defaults.timeout) if defaults.timeout else None,
        bus=bus,
        mirrors=mirrors,
        warnings=tuple(warnings),
        rsync_options=g.texts("rsync_options"),
        exec_on_success=defaults.exec_on_success,
        exec_on_failure=defaults.exec_on_failure,
        dangerous_global_success_exit_codes=defaults.success_exit_codes,
        dangerous_global_rsync_success_exit_codes=defaults.rsync_success_exit_codes,
        cgroup=cgroup,
        zfs=zfs,
        btrfs_snapshot=btrfs,
        docker=docker,
        include=IncludeConfig(include.text("include_mirrors"), tuple(files)),
        upstream_limit=g.integer("upstream_limit"),
        upstream_limits=_upstream_limits(doc, path),
    )


def _include_files(pattern: str, base: Path, path: Path, warnings: list[str]) -> list[Path]:
    """Files matched by ``include_mirrors``, in lexical order like Go's ``filepath.Glob``.

    A relative pattern is taken from the config file's directory (tunasync: the cwd).
    """
    if not pattern:
        return []
    matches = sorted(glob.glob(str(base / pattern), include_hidden=True))
    if not matches:
        warnings.append(
            Where(path, "[include]").warning("include_mirrors", f"{pattern!r} matches no file")
        )
    return [Path(m) for m in matches if Path(m).is_file()]


def _included_leaves(file: Path, warnings: list[str]) -> list[Leaf]:
    doc = read_toml(file)
    for key in doc:
        if key != "mirrors":
            warnings.append(
                f"{file}: '{key}' ignored: an included file only contributes [[mirrors]]"
            )
    return flatten(doc.get("mirrors", []), file, warnings)


def _build_all(
    leaves: list[Leaf], defaults: Defaults, warnings: list[str]
) -> tuple[MirrorConfig, ...]:
    seen: dict[str, Leaf] = {}
    mirrors: list[MirrorConfig] = []
    for leaf in leaves:
        mirror = build_mirror(leaf, defaults, warnings)
        first = seen.setdefault(mirror.name, leaf)
        if first is not leaf:
            at = str(first.where.job).removesuffix(f" ({mirror.name})")
            if first.where.file != leaf.where.file:
                at = f"{first.where.file}: {at}"
            raise leaf.where.error(
                "name", f"duplicate job name {mirror.name!r} (also defined at {at})"
            )
        mirrors.append(mirror)
    return tuple(mirrors)


def _upstream_limits(doc: dict[str, object], path: Path) -> MappingProxyType[str, int]:
    """``[upstream_limits]``: host name = runs at once (mirrorbus only)."""
    raw = doc.get("upstream_limits", {})
    where = Where(path, "[upstream_limits]")
    if not isinstance(raw, dict):
        raise where.error(None, "expected a table of host = number of runs")
    limits: dict[str, int] = {}
    for host, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise where.error(host, f"expected a positive integer, got {value!r}")
        limits[host.lower()] = value
    return MappingProxyType(limits)


def _cgroup(c: Checked) -> CgroupConfig:
    return CgroupConfig(c.flag("enable"), c.text("group"), c.text("base_path"), c.text("subsystem"))


def _zfs(c: Checked) -> ZfsConfig:
    return ZfsConfig(c.flag("enable"), c.text("zpool"))


def _btrfs(c: Checked, base: Path) -> BtrfsSnapshotConfig:
    snap = c.text("snapshot_path")
    return BtrfsSnapshotConfig(c.flag("enable"), resolve(base, snap) if snap else None)


def _docker(c: Checked) -> DockerConfig:
    return DockerConfig(c.flag("enable"), c.texts("volumes"), c.texts("options"))
