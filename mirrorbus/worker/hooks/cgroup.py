"""The cgroup hook: every process of a job lives in the job's own cgroup, and dies with it.

``[cgroup] enable`` (docs/tunasync.md §3.1, §6.2).  A process group is not enough: a daemon that
calls ``setsid`` leaves it.  A cgroup cannot be left, so after every attempt (success, failure,
timeout, stop, worker shutdown) ``post_exec`` kills whatever remains in it and removes it.

Three layouts are understood, detected from ``/proc/self/mountinfo``:

* **v2**: cgroup2 mounted at ``/sys/fs/cgroup``; processes and ``memory.max`` in one tree.
* **v1**: controllers at ``/sys/fs/cgroup/<controller>``; processes are tracked in the memory
  hierarchy (else pids, freezer, ...), limits in ``memory.limit_in_bytes``.
* **hybrid**: v1 controllers plus a controller-less cgroup2 at ``/sys/fs/cgroup/unified``
  (systemd's hybrid mode).  tunasync would take this for v2 and find no memory controller;
  here the v2 tree tracks and kills processes and the v1 memory controller limits memory.

The base cgroup is ``/`` + ``[cgroup] group`` in each hierarchy used ("manual mode": it must
exist, hold no process, and let us create and remove a child), or the worker's own cgroup when
``group`` is empty ("implicit mode").  In implicit mode on pure v2 the worker moves its
cgroup's processes into a ``__worker`` child, as tunasync does, because v2 cannot enable the
memory controller for children of a cgroup that holds processes; the root cgroup is exempt
from that rule and its processes (the whole machine's) are never moved.

Jobs run through a tiny shim: ``/bin/sh -c 'echo $$ > <cgroup.procs> && exec "$@"'``.  The
shell writes its own pid into the job cgroup and only then ``exec``s the job, so no job
instruction runs, and nothing is forked, outside the cgroup; if the write fails the shell exits
(status 2, the reason in the job log) without running the job.  This is tunasync's re-exec shim
(which waits on a pipe until the worker has moved it) without the pipe.

Not for docker jobs: their processes live in the container (the docker hook replaces this one).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio

from mirrorbus.config.worker_model import CgroupConfig, MirrorConfig, WorkerConfig
from mirrorbus.errors import ConfigError, HookError, InvalidName
from mirrorbus.events.subjects import fit, name_token, token_name
from mirrorbus.worker.hooks.base import AttemptContext, Hook
from mirrorbus.worker.process import JobProcess

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
KILL_ROUNDS = (0.01, 1.01, 2.01)
"""tunasync's SIGKILL rounds: kill everything, sleep, look again (three times)."""
SHIM_NAME = "mirrorbus-exec"
_V1_TRACKERS = ("memory", "pids", "freezer", "cpuacct", "cpu", "devices", "blkio")

Mode = Literal["v2", "v1", "hybrid"]
_CGROUP_NAME_MAX = 255


def cgroup_name(job: str) -> str:
    """The directory name of job ``job``'s cgroup: the job's subject token.

    A name as written cannot always be one: the kernel's own files sit beside the job
    directories and all have a dot (``cgroup.procs``, ``memory.max``), so a job named
    ``memory.max`` could not get a directory.  A token has no dot; one starting with ``__``
    (a plain name such as ``__worker``) gets its first ``_`` escaped, so no job is the
    worker's own ``__worker`` child or the setup probe ``__test``.  Plain names keep their
    directory (``debian`` is ``debian``); a token too long for a file name is cut by
    :func:`~mirrorbus.events.subjects.fit`.  :func:`job_of_cgroup` reads a name back.
    """
    token = name_token(job, "job name")
    if token.startswith("__"):
        token = "%5F" + token[1:]
    return fit(token, _CGROUP_NAME_MAX)


def job_of_cgroup(directory: str) -> str | None:
    """The job whose cgroup directory is ``directory``; None for anything else (the worker's
    own ``__worker``, a cut long name)."""
    token = "_" + directory[3:] if directory.startswith("%5F_") else directory
    try:
        return token_name(token, "job name")
    except InvalidName:
        return None


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy and the worker's own cgroup in it."""

    mount: Path
    own: str  # e.g. "/system.slice/mirrorbus.service" (from /proc/self/cgroup)


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Which hierarchy tracks a job's processes and which one limits its memory."""

    mode: Mode
    track: Hierarchy
    memory: Hierarchy | None  # None: no memory controller usable

    @property
    def memory_file(self) -> str:
        return "memory.max" if self.mode == "v2" else "memory.limit_in_bytes"


def detect_layout(
    mountinfo: str, self_cgroup: str, root: Path = CGROUP_ROOT
) -> CgroupLayout | None:
    """The cgroup layout under ``root`` from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``
    text; None when no cgroup filesystem is mounted there."""
    v2_mounts: dict[Path, None] = {}
    v1_mounts: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        if mount != root and mount.parent != root:
            continue
        if tail[0] == "cgroup2":
            v2_mounts[mount] = None
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                v1_mounts.setdefault(option, mount)
    own_v2 = "/"
    own_v1: dict[str, str] = {}
    for line in self_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            own_v2 = path or "/"
        for controller in controllers.split(","):
            own_v1[controller] = path or "/"
    if root in v2_mounts:
        v2 = Hierarchy(root, own_v2)
        has_memory = "memory" in _read(root / "cgroup.controllers").split()
        return CgroupLayout("v2", v2, v2 if has_memory else None)
    memory = (
        Hierarchy(v1_mounts["memory"], own_v1.get("memory", "/")) if "memory" in v1_mounts else None
    )
    unified = root / "unified"
    if unified in v2_mounts and v1_mounts:
        return CgroupLayout("hybrid", Hierarchy(unified, own_v2), memory)
    for controller in _V1_TRACKERS:
        if controller in v1_mounts:
            track = Hierarchy(v1_mounts[controller], own_v1.get(controller, "/"))
            return CgroupLayout("v1", track, memory)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _pids(directory: Path) -> list[int]:
    return [int(p) for p in _read(directory / "cgroup.procs").split()]


def _signal_all(directories: Sequence[Path], sig: signal.Signals) -> int:
    """Send ``sig`` to every process of ``directories``; return how many there were."""
    seen = 0
    for directory in directories:
        for pid in _pids(directory):
            seen += 1
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    return seen


class Cgroups:
    """The worker's cgroup base(s), checked at start-up; makes one :class:`JobCgroup` per run.

    :meth:`setup` raises :class:`ConfigError` (naming ``[cgroup]``) when cgroups cannot be
    used, so the worker refuses to start rather than run jobs it cannot contain.
    """

    def __init__(self, layout: CgroupLayout, bases: dict[Path, Path]) -> None:
        self.layout = layout
        self._bases = bases  # hierarchy mount -> base cgroup directory

    @property
    def memory_available(self) -> bool:
        return self.layout.memory is not None

    def base(self, hierarchy: Hierarchy) -> Path:
        return self._bases[hierarchy.mount]

    @classmethod
    def setup(
        cls,
        config: CgroupConfig,
        *,
        file: Path | str | None = None,
        root: Path = CGROUP_ROOT,
        mountinfo: str | None = None,
        self_cgroup: str | None = None,
    ) -> Cgroups:
        def fail(problem: str) -> ConfigError:
            return ConfigError(f"[cgroup] enable = true, but {problem}", file=file)

        mountinfo = _read(Path("/proc/self/mountinfo")) if mountinfo is None else mountinfo
        self_cgroup = _read(Path("/proc/self/cgroup")) if self_cgroup is None else self_cgroup
        layout = detect_layout(mountinfo, self_cgroup, root)
        if layout is None:
            raise fail(f"no cgroup filesystem is mounted at {root}")
        hierarchies = [layout.track]
        if layout.memory is not None and layout.memory.mount != layout.track.mount:
            hierarchies.append(layout.memory)
        bases: dict[Path, Path] = {}
        for h in hierarchies:
            rel = config.group.strip("/") if config.group else h.own.strip("/")
            base = h.mount / rel if rel else h.mount
            if not base.is_dir():
                raise fail(
                    f"cgroup {base} does not exist; create it for the worker's user "
                    f"(e.g. mkdir {base}) or leave [cgroup] group empty"
                )
            if config.group and _pids(base):
                raise fail(f"There are remaining processes in cgroup {base}")
            probe = base / "__test"
            try:
                probe.mkdir(exist_ok=True)
                probe.rmdir()
            except OSError as exc:
                raise fail(
                    f"cannot create a child cgroup in {base}: {exc.strerror or exc}"
                ) from exc
            bases[h.mount] = base
        if layout.mode == "v2" and layout.memory is not None:
            base = bases[layout.track.mount]
            if not config.group and base != layout.track.mount:
                _move_into_worker_child(base)
            try:
                (base / "cgroup.subtree_control").write_text("+memory")
            except OSError as exc:
                log.warning("cannot enable the memory controller below %s: %s", base, exc)
                layout = CgroupLayout(layout.mode, layout.track, None)
        log.info(
            "cgroups: %s layout; processes tracked under %s%s",
            layout.mode,
            bases[layout.track.mount],
            "" if layout.memory is None else f", memory limits under {bases[layout.memory.mount]}",
        )
        return cls(layout, bases)

    def job(self, name: str) -> JobCgroup:
        """The (not yet created) cgroup of job ``name``."""
        track = self.base(self.layout.track) / cgroup_name(name)
        memory = None
        if self.layout.memory is not None:
            memory = self.base(self.layout.memory) / cgroup_name(name)
        return JobCgroup(track, memory, self.layout.memory_file)


def _move_into_worker_child(base: Path) -> None:
    """tunasync's implicit mode on v2: move the processes of ``base`` into ``base/__worker``."""
    worker = base / "__worker"
    worker.mkdir(exist_ok=True)
    for pid in _pids(base):
        with contextlib.suppress(ProcessLookupError):
            (worker / "cgroup.procs").write_text(str(pid))


@dataclass(frozen=True, slots=True)
class JobCgroup:
    """The cgroup directory (or directories, in v1/hybrid) of one job."""

    track: Path
    memory: Path | None
    memory_file: str

    @property
    def directories(self) -> list[Path]:
        dirs = [self.track]
        if self.memory is not None and self.memory != self.track:
            dirs.append(self.memory)
        return dirs

    def create(self, memory_limit: int | None) -> None:
        """Make the cgroup fresh (a leftover from a killed worker is emptied and removed)."""
        if any(d.exists() for d in self.directories):
            log.warning(
                "cgroup %s left over from an earlier run; killing what is in it", self.track
            )
            self.kill_sync()
            self.remove_sync()
        for d in self.directories:
            d.mkdir()
        if memory_limit is not None:
            if self.memory is None:
                raise HookError(
                    f"memory_limit needs the memory controller, unavailable below {self.track}"
                )
            (self.memory / self.memory_file).write_text(str(memory_limit))

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.directories]

    def pids(self) -> list[int]:
        return sorted({pid for d in self.directories for pid in _pids(d)})

    def terminate(self) -> None:
        """SIGTERM everything in the cgroup (the grace a stopped job's daemons get too)."""
        _signal_all(self.directories, signal.SIGTERM)

    async def kill(self) -> bool:
        """Kill every process in the cgroup; True when none is left."""
        kill_file = self.track / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
                for _ in range(300):  # a kill is asynchronous: up to ~3 s
                    if not self.pids():
                        return True
                    await anyio.sleep(0.01)
        for delay in KILL_ROUNDS:
            if not _signal_all(self.directories, signal.SIGKILL):
                return True
            await anyio.sleep(delay)
        return not self.pids()

    def kill_sync(self) -> None:
        for delay in KILL_ROUNDS:
            if not _signal_all(self.directories, signal.SIGKILL):
                return
            time.sleep(delay)

    def remove_sync(self) -> None:
        """rmdir the cgroup; retries briefly while the killed processes finish exiting."""
        for d in self.directories:
            for attempt in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 49:
                        raise HookError(f"cannot remove cgroup {d}: {exc.strerror}") from exc
                    time.sleep(0.02)


class CgroupLauncher:
    """Starts a job's command inside its cgroup through the shell shim (see module doc)."""

    def __init__(self, cgroup: JobCgroup) -> None:
        self.cgroup = cgroup

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        files = self.cgroup.procs_files()
        script = " && ".join(['echo $$ > "$1" && shift'] * len(files) + ['exec "$@"'])
        return ["/bin/sh", "-c", script, SHIM_NAME, *map(str, files), *argv], dict(env)

    async def started(self, pid: int) -> None:
        return None  # the shim moved itself before running the job

    async def terminate(self, process: JobProcess) -> None:
        if process.returncode is None:  # a stop or timeout: warn the daemons too
            self.cgroup.terminate()


class CgroupHook(Hook):
    """Creates the job's cgroup per attempt, kills what is left in it and removes it after."""

    name = "cgroup"

    def __init__(self, cgroups: Cgroups, mirror: MirrorConfig) -> None:
        self.cgroups = cgroups
        self.cgroup = cgroups.job(mirror.name)

    async def pre_exec(self, ctx: AttemptContext) -> None:
        try:
            await anyio.to_thread.run_sync(self.cgroup.create, ctx.mirror.memory_limit)
        except OSError as exc:
            with contextlib.suppress(HookError):
                await anyio.to_thread.run_sync(self.cgroup.remove_sync)
            raise HookError(f"cannot create cgroup {self.cgroup.track}: {exc.strerror}") from exc
        except HookError:
            with contextlib.suppress(HookError):
                await anyio.to_thread.run_sync(self.cgroup.remove_sync)
            raise
        ctx.launcher = CgroupLauncher(self.cgroup)

    async def post_exec(self, ctx: AttemptContext) -> None:
        if not await self.cgroup.kill():
            log.error(
                "job [%s]: Unable to kill all child tasks: %s",
                ctx.mirror.name,
                self.cgroup.pids(),
            )
        await anyio.to_thread.run_sync(self.cgroup.remove_sync)


_setups: dict[CgroupConfig, Cgroups] = {}


def worker_cgroups(worker: WorkerConfig) -> Cgroups:
    """The worker's :class:`Cgroups`, set up (and checked) once per process and config."""
    found = _setups.get(worker.cgroup)
    if found is None:
        found = _setups[worker.cgroup] = Cgroups.setup(worker.cgroup, file=worker.path)
    return found


def cgroup_hook(mirror: MirrorConfig, worker: WorkerConfig) -> CgroupHook:
    """The cgroup hook of ``mirror``; ConfigError if its ``memory_limit`` cannot be applied."""
    cgroups = worker_cgroups(worker)
    if mirror.memory_limit is not None and not cgroups.memory_available:
        raise ConfigError(
            "[cgroup]: memory_limit is set but no memory controller can be used "
            f"({cgroups.layout.mode} layout)",
            file=worker.path,
            job=mirror.name,
            key="memory_limit",
        )
    return CgroupHook(cgroups, mirror)
