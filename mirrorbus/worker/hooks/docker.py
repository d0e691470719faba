"""The docker hook: a job with a ``docker_image`` runs in a container (docs/tunasync.md §6.1).

Active when ``[docker] enable = true`` and the mirror sets ``docker_image``; it then replaces
the cgroup hook for that job.  The ``docker run`` argv is tunasync's, in its order, so images
and scripts written for tunasync work unchanged::

    docker run --rm -a STDOUT -a STDERR --name tunasync-job-<name> -w <workdir> -u <uid>:<gid>
        -v <[docker] volumes> -v <docker_volumes> -v <exclude_file>:<exclude_file>:ro
        -v <logdir>:<logdir> -v <logfile>:<logfile> -v <workdir>:<workdir>
        -e K=V ... -m <bytes> <[docker] options> <docker_options> <image> <argv...>

``-e`` carries only the job's own variables (``TUNASYNC_*`` and the mirror ``env``; for rsync,
``USER``/``RSYNC_PASSWORD``), never the worker's environment; the ``docker`` CLI itself runs
with the worker's environment.  A stop or timeout ends the container with
``docker stop -t 2 tunasync-job-<name>`` (signalling the CLI would only detach it), and
``post_exec`` waits for ``--rm`` to have removed the container, warning if it has not (the next
run would fail on the name).  The ``docker`` binary is looked up on ``PATH`` at each attempt.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from mirrorbus.config.worker_model import MirrorConfig, WorkerConfig
from mirrorbus.dirs import make_dirs
from mirrorbus.errors import HookError, InvalidName
from mirrorbus.events.subjects import name_token, token_name
from mirrorbus.worker.hooks.base import AttemptContext, Hook
from mirrorbus.worker.process import JobProcess

log = logging.getLogger(__name__)

STOP_GRACE = 2
"""``docker stop -t``: seconds the container gets between SIGTERM and SIGKILL."""
DOCKER_COMMAND_TIMEOUT = 30.0
"""Seconds a ``docker stop`` or ``docker ps`` may take before we give up on it."""


_CONTAINER = "tunasync-job"
_DOCKER_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def container_name(mirror: MirrorConfig) -> str:
    """tunasync's container name ``tunasync-job-<name>``, kept so operators' ``docker``
    habits still work, for every name docker accepts there (letters, digits, ``_.-``).

    Docker refuses anything else (a space, ``+``, ``é``...); such a job's container is
    ``tunasync-job.<token>``, its subject token with ``%`` spelled ``.``: the ``.`` after
    ``tunasync-job`` keeps the two forms apart, and a token has no ``.`` of its own, so every
    job has its own container name and :func:`job_of_container` reads it back.
    """
    name = mirror.name
    if _DOCKER_SAFE.fullmatch(name):
        return f"{_CONTAINER}-{name}"
    return f"{_CONTAINER}.{name_token(name, 'job name').replace('%', '.')}"


def _regex(container: str) -> str:
    """``container`` as docker's name filter (a regular expression) must see it: a container
    name's only special character is ``.``."""
    return container.replace(".", "\\.")


def job_of_container(container: str) -> str | None:
    """The job whose container is named ``container`` (see :func:`container_name`)."""
    rest = container[len(_CONTAINER) + 1 :]
    if container.startswith(f"{_CONTAINER}-") and _DOCKER_SAFE.fullmatch(rest):
        return rest
    if container.startswith(f"{_CONTAINER}."):
        try:
            return token_name(rest.replace(".", "%"), "job name")
        except InvalidName:
            return None
    return None


def job_environment(mirror: MirrorConfig, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The job's own variables, with their values in ``env``: ``TUNASYNC_*`` then the mirror
    ``env`` (command), or the mirror ``env`` then ``USER``/``RSYNC_PASSWORD`` when the mirror
    sets ``username``/``password`` (rsync).  tunasync's order was a Go map's (random)."""
    if mirror.provider == "command":
        keys = [k for k in env if k.startswith("TUNASYNC_") and k not in mirror.env]
        keys += [k for k in mirror.env if k in env]
    else:
        keys = [k for k in mirror.env if k in env and k not in ("USER", "RSYNC_PASSWORD")]
        keys += ["USER"] * bool(mirror.username) + ["RSYNC_PASSWORD"] * bool(mirror.password)
        keys += [k for k in ("USER", "RSYNC_PASSWORD") if k in mirror.env and k not in keys]
    return [(k, env[k]) for k in keys if k in env]


def docker_run_argv(
    docker: str,
    mirror: MirrorConfig,
    worker: WorkerConfig,
    argv: Sequence[str],
    env: Mapping[str, str],
    runtime_volumes: Sequence[str],
) -> list[str]:
    """The whole ``docker run`` command line of one attempt (see the module doc)."""
    workdir = str(mirror.working_dir)
    args = [docker, "run", "--rm", "-a", "STDOUT", "-a", "STDERR"]
    args += ["--name", container_name(mirror), "-w", workdir]
    args += ["-u", f"{os.getuid()}:{os.getgid()}"]
    volumes = [*worker.docker.volumes, *mirror.docker_volumes]
    if mirror.exclude_file is not None:
        volumes.append(f"{mirror.exclude_file}:{mirror.exclude_file}:ro")
    volumes += runtime_volumes
    for volume in volumes:
        args += ["-v", volume]
    for key, value in job_environment(mirror, env):
        args += ["-e", f"{key}={value}"]
    if mirror.memory_limit is not None:
        args += ["-m", str(mirror.memory_limit)]
    args += [*worker.docker.options, *mirror.docker_options, mirror.docker_image, *argv]
    return args


class DockerLauncher:
    """Runs the attempt's commands through ``docker run``; ends them with ``docker stop``."""

    def __init__(
        self, docker: str, mirror: MirrorConfig, worker: WorkerConfig, volumes: Sequence[str]
    ) -> None:
        self.docker = docker
        self.mirror = mirror
        self.worker = worker
        self.volumes = list(volumes)

    def command(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        run = docker_run_argv(self.docker, self.mirror, self.worker, argv, env, self.volumes)
        return run, dict(os.environ)

    async def started(self, pid: int) -> None:
        return None

    async def terminate(self, process: JobProcess) -> None:
        if process.returncode is not None:
            return  # exited by itself: nothing to stop
        name = container_name(self.mirror)
        result = await _docker(self.docker, "stop", "-t", str(STOP_GRACE), name)
        if result is None or result.returncode != 0:
            log.warning("job [%s]: docker stop %s failed", self.mirror.name, name)


async def _docker(docker: str, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """Run a short ``docker`` command; None if it could not run or took too long."""
    with anyio.move_on_after(DOCKER_COMMAND_TIMEOUT):
        try:
            return await anyio.run_process([docker, *args], check=False)
        except OSError as exc:
            log.warning("cannot run %s %s: %s", docker, args[0], exc)
            return None
    log.warning("%s %s took more than %gs", docker, args[0], DOCKER_COMMAND_TIMEOUT)
    return None


class DockerHook(Hook):
    """Per attempt: make the working dir, mount the attempt's paths, run in a container."""

    name = "docker"

    def __init__(
        self, mirror: MirrorConfig, worker: WorkerConfig, *, poll_interval: float = 1.0
    ) -> None:
        self.mirror = mirror
        self.worker = worker
        self.poll_interval = poll_interval
        self.polls = 10
        self._docker = ""

    async def pre_exec(self, ctx: AttemptContext) -> None:
        workdir = ctx.mirror.working_dir
        try:
            make_dirs(workdir, 0o755)
        except OSError as exc:
            raise HookError(f"Error making dir {workdir}: {exc.strerror or exc}") from exc
        docker = shutil.which("docker")
        if docker is None:
            raise HookError("docker_image is set but no docker executable is on PATH")
        self._docker = docker
        m = ctx.mirror
        log_file = ctx.log_file if ctx.log_file is not None else Path(os.devnull)
        volumes = [f"{m.log_dir}:{m.log_dir}", f"{log_file}:{log_file}", f"{workdir}:{workdir}"]
        ctx.extra_volumes = volumes
        ctx.launcher = DockerLauncher(docker, m, self.worker, volumes)

    async def post_exec(self, ctx: AttemptContext) -> None:
        """Wait for ``--rm`` to remove the container; warn (never fail) if it stays."""
        ctx.extra_volumes = []
        if not self._docker:
            return
        name = container_name(ctx.mirror)
        for _ in range(self.polls):
            result = await _docker(
                self._docker,
                "ps",
                "-a",
                "--filter",
                f"name=^{_regex(name)}$",
                "--format",
                "{{.Status}}",
            )
            if result is not None and result.returncode == 0 and not result.stdout.strip():
                return
            await anyio.sleep(self.poll_interval)
        log.warning("container %s not removed automatically, next sync may fail", name)
