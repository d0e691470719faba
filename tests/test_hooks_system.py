"""System hooks: cgroup, docker, zfs, btrfs snapshot (docs/tunasync.md §4.1, §6.1-§6.4).

End to end through a real worker, manager and nats-server (tests/e2e.py) wherever the machine
allows it:

* cgroup: real cgroups of this machine, under a fresh test group removed at teardown;
* zfs: a real tmpfs mount point (what ``mountpoint -q`` checks) against a plain directory;
* docker and btrfs: stand-in executables from ``tests/standins`` first on the worker's
  ``PATH``, because no docker engine runs here and there is no Btrfs filesystem.  They record
  the exact argv of every call and emulate enough (run the command on the host, stop it; make
  subvolumes and snapshots out of plain directories) for the jobs to really run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from e2e import Site, alive, read_pid, wait_for

from mirrorbus.config.worker import load_worker_config
from mirrorbus.config.worker_model import MirrorConfig
from mirrorbus.worker.hooks.attach import build_hooks
from mirrorbus.worker.hooks.base import AttemptContext, ExecHook
from mirrorbus.worker.hooks.btrfs import BtrfsSnapshotHook
from mirrorbus.worker.hooks.cgroup import CgroupHook, CgroupLayout, detect_layout
from mirrorbus.worker.hooks.docker import DockerHook
from mirrorbus.worker.hooks.zfs import ZfsHook

STANDINS = Path(__file__).parent / "standins"
US = "\x1f"


# -- fixtures ------------------------------------------------------------------------------


@dataclass
class TestGroup:
    """A manual-mode ``[cgroup] group`` made for one test, in every hierarchy the layout uses."""

    __test__ = False  # not a test class

    name: str
    layout: CgroupLayout
    bases: list[Path]

    def job_dirs(self, job: str) -> list[Path]:
        return [base / job for base in self.bases]


def _layout() -> CgroupLayout | None:
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    return detect_layout(mountinfo, own)


def _empty_and_remove(directory: Path) -> None:
    """Kill what is in ``directory`` (a cgroup) and below, then rmdir it all."""
    if not directory.is_dir():
        return
    for child in [p for p in directory.iterdir() if p.is_dir()]:
        _empty_and_remove(child)
    for _ in range(100):
        pids = (directory / "cgroup.procs").read_text().split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            directory.rmdir()
            return
        except OSError:
            time.sleep(0.02)
    directory.rmdir()


@pytest.fixture
def cgroup_group() -> Iterator[TestGroup]:
    """A fresh cgroup group for a manual-mode worker; always removed, even on failure."""
    layout = _layout()
    if layout is None or os.geteuid() != 0:
        pytest.skip("needs a cgroup filesystem at /sys/fs/cgroup and root")
    name = f"mirrorbus-test-{secrets.token_hex(4)}"
    mounts = [layout.track.mount]
    if layout.memory is not None and layout.memory.mount not in mounts:
        mounts.append(layout.memory.mount)
    bases = [mount / name for mount in mounts]
    try:
        for base in bases:
            base.mkdir()
        if layout.mode == "v2" and layout.memory is not None:
            (bases[0] / "cgroup.subtree_control").write_text("+memory")
        yield TestGroup(name, layout, bases)
    finally:
        for base in bases:
            _empty_and_remove(base)


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put tests/standins first on PATH (the worker inherits it) with a fresh record dir."""
    record = tmp_path / "standin"
    record.mkdir()
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_STANDIN_DIR", str(record))
    monkeypatch.setenv("BTRFS_STANDIN_DIR", str(record))
    return record


def calls(record: Path) -> list[list[str]]:
    """The argv (without the program) of every stand-in call so far, in order."""
    path = record / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split(US) for line in lines]


def worker_output_has(site: Site, text: str) -> bool:
    return any(text in site.output(key) for key in site.logs if key.startswith("worker"))


# -- build_hooks ----------------------------------------------------------------------------
def test_hooks_attach_in_tunasyncs_order(tmp_path: Path, cgroup_group: TestGroup) -> None:
    """zfs, btrfs, docker else cgroup, then the exec hooks (docs/tunasync.md §4.1)."""
    config = tmp_path / "w.toml"
    config.write_text(
        f"""
[global]
name = "w"
mirror_dir = "{tmp_path}/m"
log_dir = "{tmp_path}/l"
[cgroup]
enable = true
group = "{cgroup_group.name}"
[zfs]
enable = true
[btrfs_snapshot]
enable = true
snapshot_path = "{tmp_path}/snap"
[docker]
enable = true
[[mirrors]]
name = "plain"
provider = "command"
command = "/bin/true"
exec_on_success = ["/bin/true"]
exec_on_failure = ["/bin/true"]
[[mirrors]]
name = "boxed"
provider = "command"
command = "/bin/true"
docker_image = "standin/x"
"""
    )
    worker = load_worker_config(config)
    plain = [type(h) for h in build_hooks(worker.mirror("plain"), worker)]
    boxed = [type(h) for h in build_hooks(worker.mirror("boxed"), worker)]
    assert plain == [ZfsHook, BtrfsSnapshotHook, CgroupHook, ExecHook, ExecHook]
    assert boxed == [ZfsHook, BtrfsSnapshotHook, DockerHook]


# -- cgroup ---------------------------------------------------------------------------------
CGROUP_SCRIPT = """\
#!/bin/sh
# Where does the job run, under which memory limit?  Then leave a daemon behind.
cd "$TUNASYNC_WORKING_DIR"
cat /proc/self/cgroup > cgroup.txt
mem=$(sed -n 's/^[0-9]*:memory:\\(.*\\)$/\\1/p' /proc/$$/cgroup)
if [ -n "$mem" ]; then
    cat "/sys/fs/cgroup/memory$mem/memory.limit_in_bytes" > limit.txt
else
    cat "/sys/fs/cgroup$(sed -n 's/^0::\\(.*\\)$/\\1/p' /proc/$$/cgroup)/memory.max" > limit.txt
fi
setsid sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > daemon.pid
"""


def test_cgroup_puts_the_job_in_its_cgroup_with_its_memory_limit(
    site: Site, cgroup_group: TestGroup
) -> None:
    """The job runs in ``<group>/<job>`` from its first instruction, under ``memory_limit``;
    after a successful run its setsid daemon is dead and the cgroup is gone."""
    script = site.root / "where.sh"
    script.write_text(CGROUP_SCRIPT)
    config = site.worker_config(
        "w1",
        f"""[cgroup]
enable = true
group = "{cgroup_group.name}"

[[mirrors]]
name = "capped"
provider = "command"
command = "/bin/sh {script}"
memory_limit = "64M"
""",
    )
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "capped", lambda j: j.status == "success")
    workdir = site.workdir("w1", "capped")
    lines = (workdir / "cgroup.txt").read_text().splitlines()
    where = {line.split(":")[1]: line.split(":", 2)[2] for line in lines}
    layout = cgroup_group.layout
    job_path = f"/{cgroup_group.name}/capped"
    if layout.mode in ("v2", "hybrid"):
        assert where[""] == job_path
    if layout.mode in ("v1", "hybrid"):
        assert where["memory"] == job_path
    assert int((workdir / "limit.txt").read_text()) == 64 * 1024 * 1024
    daemon = read_pid(workdir / "daemon.pid")
    assert daemon is not None
    wait_for(lambda: not alive(daemon), 10, "the setsid daemon to be killed")
    assert not any(d.exists() for d in cgroup_group.job_dirs("capped"))


def test_cgroup_that_cannot_be_used_stops_the_worker_at_startup(
    site: Site, cgroup_group: TestGroup
) -> None:
    """A missing group, and a group that holds processes, are start-up errors naming
    ``[cgroup]`` and the config file."""
    job = '[[mirrors]]\nname = "j"\nprovider = "command"\ncommand = "/bin/true"\n'
    missing = site.worker_config(
        "w1", f'[cgroup]\nenable = true\ngroup = "mirrorbus-test-missing-group"\n{job}'
    )
    site.start_manager()  # the worker waits for the streams the manager makes
    proc = site.start_worker(missing, key="worker-missing")
    assert proc.wait(30) == 2
    out = site.output("worker-missing")
    assert "[cgroup]" in out and str(missing) in out and "does not exist" in out

    squatter = subprocess.Popen(["sleep", "300"])
    try:
        (cgroup_group.bases[0] / "cgroup.procs").write_text(str(squatter.pid))
        busy = site.worker_config(
            "w2", f'[cgroup]\nenable = true\ngroup = "{cgroup_group.name}"\n{job}'
        )
        proc = site.start_worker(busy, key="worker-busy")
        assert proc.wait(30) == 2
        out = site.output("worker-busy")
        assert "There are remaining processes in cgroup" in out and "[cgroup]" in out
    finally:
        squatter.kill()
        squatter.wait()


# -- docker (stand-in) ----------------------------------------------------------------------
def test_docker_run_argv_is_tunasyncs(site: Site, standins: Path) -> None:
    """The exact ``docker run`` argv of §6.1, and the job really runs (in ``-w`` with the
    ``-e`` variables).  ``docker`` is a stand-in: no docker engine runs here."""
    exclude = site.root / "exclude.txt"
    exclude.write_text("*.tmp\n")
    config = site.worker_config(
        "w1",
        f"""[docker]
enable = true
volumes = ["/srv/shared:/srv/shared:ro"]
options = ["--cpus", "2"]

[[mirrors]]
name = "boxed"
provider = "command"
upstream = "https://example.org/boxed/"
command = "/bin/sh -c 'echo \\"$GREETING from $(pwd)\\" > out.txt'"
docker_image = "standin/tools:1"
docker_volumes = ["/data/x:/data/x"]
docker_options = ["--network", "host"]
exclude_file = "{exclude}"
memory_limit = "64M"
[mirrors.env]
GREETING = "hi"
""",
    )
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "boxed", lambda j: j.status == "success")
    workdir = site.workdir("w1", "boxed")
    assert (workdir / "out.txt").read_text() == f"hi from {workdir}\n"
    made = calls(standins)
    run = made[0]
    log_file = next(a.split("=", 1)[1] for a in run if a.startswith("TUNASYNC_LOG_FILE="))
    log_dir = site.root / "logs" / "w1" / "boxed"
    assert Path(log_file).parent == log_dir
    assert run == [
        "run", "--rm", "-a", "STDOUT", "-a", "STDERR",
        "--name", "tunasync-job-boxed", "-w", str(workdir), "-u", f"{os.getuid()}:{os.getgid()}",
        "-v", "/srv/shared:/srv/shared:ro",
        "-v", "/data/x:/data/x",
        "-v", f"{exclude}:{exclude}:ro",
        "-v", f"{log_dir}:{log_dir}",
        "-v", f"{log_file}:{log_file}",
        "-v", f"{workdir}:{workdir}",
        "-e", "TUNASYNC_MIRROR_NAME=boxed",
        "-e", f"TUNASYNC_WORKING_DIR={workdir}",
        "-e", "TUNASYNC_UPSTREAM_URL=https://example.org/boxed/",
        "-e", f"TUNASYNC_LOG_DIR={log_dir}",
        "-e", f"TUNASYNC_LOG_FILE={log_file}",
        "-e", "GREETING=hi",
        "-m", str(64 * 1024 * 1024),
        "--cpus", "2", "--network", "host",
        "standin/tools:1",
        "/bin/sh", "-c", 'echo "$GREETING from $(pwd)" > out.txt',
    ]  # fmt: skip
    # It ended by itself: no stop, one look that --rm removed the container.
    assert made[1:] == [
        ["ps", "-a", "--filter", "name=^tunasync-job-boxed$", "--format", "{{.Status}}"]
    ]
    assert not list((standins / "containers").iterdir())


def test_docker_stop_ends_the_container(site: Site, standins: Path) -> None:
    """``ctl stop`` runs ``docker stop -t 2 tunasync-job-<name>``: the stand-in runs the
    "container" outside the CLI's process group, so only that stop can end it.  ``docker`` is a
    stand-in: no docker engine runs here."""
    config = site.worker_config(
        "w1",
        """[docker]
enable = true

[[mirrors]]
name = "long"
provider = "command"
command = "/bin/sh -c 'echo $$ > pid; exec sleep 300'"
docker_image = "standin/tools:1"
""",
    )
    site.start_manager()
    site.start_worker(config)
    pid = wait_for(lambda: read_pid(site.workdir("w1", "long") / "pid"), what="the job's pid")
    assert site.ctl("stop", "-w", "w1", "long").returncode == 0
    site.wait_job("w1", "long", lambda j: j.status == "paused")
    wait_for(lambda: not alive(pid), 10, "the container's process to end")

    def ended() -> list[list[str]] | None:
        made = calls(standins)
        return made if made and made[-1][0] == "ps" else None

    made = wait_for(ended, what="the docker ps of post_exec")
    assert [c[0] for c in made] == ["run", "stop", "ps"]
    assert made[1] == ["stop", "-t", "2", "tunasync-job-long"]
    assert not list((standins / "containers").iterdir())  # no container left behind


def test_docker_names_of_jobs_docker_would_refuse(site: Site, standins: Path) -> None:
    """A job named ``linux stable`` (docker refuses the space) gets ``tunasync-job.linux.20stable``
    and is stopped by that name; ``crates.io-index.git`` keeps tunasync's name, and the
    ``ps`` filter (a regular expression) matches its dots literally.  ``docker`` is a
    stand-in: no docker engine runs here."""
    jobs = "".join(
        f"""
[[mirrors]]
name = "{name}"
provider = "command"
command = "/bin/sh -c 'echo $$ > pid; exec sleep 300'"
docker_image = "standin/tools:1"
"""
        for name in ("linux stable", "crates.io-index.git")
    )
    config = site.worker_config("w1", "[docker]\nenable = true\n" + jobs)
    site.start_manager()
    site.start_worker(config)
    for name, container, pattern in (
        ("linux stable", "tunasync-job.linux.20stable", r"tunasync-job\.linux\.20stable"),
        (
            "crates.io-index.git",
            "tunasync-job-crates.io-index.git",
            r"tunasync-job-crates\.io-index\.git",
        ),
    ):
        _stop_in_container(site, standins, name, container, pattern)


def _stop_in_container(site: Site, standins: Path, name: str, container: str, pattern: str) -> None:
    pid = wait_for(lambda: read_pid(site.workdir("w1", name) / "pid"), what=f"{name}'s pid")
    assert (standins / "containers" / container).exists()
    assert site.ctl("stop", "-w", "w1", name).returncode == 0
    site.wait_job("w1", name, lambda j: j.status == "paused")
    wait_for(lambda: not alive(pid), 10, "the container's process to end")
    ps = ["ps", "-a", "--filter", f"name=^{pattern}$", "--format", "{{.Status}}"]
    wait_for(lambda: ps in calls(standins), what=f"the docker ps of {name}'s post_exec")
    assert ["stop", "-t", "2", container] in calls(standins)
    assert not (standins / "containers" / container).exists()


def _mirror(tmp_path: Path, name: str = "boxed", **kw: object) -> MirrorConfig:
    return MirrorConfig(
        name=name,
        provider="command",
        upstream="",
        command=("/bin/true",),
        interval=timedelta(minutes=1),
        retry=1,
        timeout=None,
        working_dir=tmp_path / "work" / name,
        log_dir=tmp_path / "log" / name,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.e2e
@pytest.mark.anyio
async def test_docker_warns_when_the_container_stays(
    tmp_path: Path, standins: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """post_exec polls ``docker ps`` ten times, then warns (and never fails the run).
    ``docker`` is a stand-in (no docker engine here); a container record made by the test,
    for a live process, makes it answer "Up"."""
    config = tmp_path / "w.toml"
    config.write_text(
        f'[global]\nname = "w"\nmirror_dir = "{tmp_path}/work"\nlog_dir = "{tmp_path}/log"\n'
        '[docker]\nenable = true\n[[mirrors]]\nname = "boxed"\nprovider = "command"\n'
        'command = "/bin/true"\ndocker_image = "standin/x"\n'
    )
    worker = load_worker_config(config)
    mirror = worker.mirror("boxed")
    hook = DockerHook(mirror, worker, poll_interval=0.01)
    ctx = AttemptContext(mirror=mirror, worker=worker, log_file=tmp_path / "log" / "x.log")
    await hook.pre_exec(ctx)
    assert mirror.working_dir.is_dir()
    (standins / "containers").mkdir(exist_ok=True)
    (standins / "containers" / "tunasync-job-boxed").write_text(f"{os.getpid()} 1\n")
    with caplog.at_level(logging.WARNING):
        await hook.post_exec(ctx)
    assert "container tunasync-job-boxed not removed automatically, next sync may fail" in (
        caplog.text
    )
    assert [c[0] for c in calls(standins)] == ["ps"] * 10


# -- zfs (a real mount point) ---------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "dataset"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_zfs_runs_only_on_a_mount_point(site: Site, tmpfs: Path) -> None:
    """``mountpoint -q`` on the working dir: a real tmpfs mount passes; a plain dir and a
    missing dir fail the run before it starts, with tunasync's help in the worker log."""
    plain = site.root / "plain"
    plain.mkdir()
    config = site.worker_config(
        "w1",
        f"""[zfs]
enable = true
zpool = "tank"

[[mirrors]]
name = "mounted"
provider = "command"
command = "/bin/sh -c 'echo synced > data'"
mirror_dir = "{tmpfs}"

[[mirrors]]
name = "Plain"
provider = "command"
command = "/bin/true"
mirror_dir = "{plain}"

[[mirrors]]
name = "missing"
provider = "command"
command = "/bin/true"
mirror_dir = "{site.root / "nowhere"}"
""",
    )
    site.start_manager()
    site.start_worker(config)
    site.wait_job("w1", "mounted", lambda j: j.status == "success")
    assert (tmpfs / "data").read_text() == "synced\n"
    bad = site.wait_job("w1", "Plain", lambda j: j.status == "failed")
    assert bad.error_msg == f"error exec hook pre-job: {plain} is not a mount point"
    gone = site.wait_job("w1", "missing", lambda j: j.status == "failed")
    assert gone.error_msg.startswith("error exec hook pre-job: working directory")
    assert not (site.root / "nowhere").exists()  # the hook creates nothing
    wait_for(lambda: worker_output_has(site, "zfs create 'tank/plain'"), what="zfs help")
    assert worker_output_has(site, f"zfs set mountpoint='{plain}' 'tank/plain'")


# -- btrfs (stand-in) -----------------------------------------------------------------------
def test_btrfs_snapshots_after_each_success_only(site: Site, standins: Path) -> None:
    """Subvolume created when missing; after a success the old snapshot is deleted and a new
    one taken; a failed run keeps the old snapshot.  ``btrfs`` is a stand-in (no Btrfs here)
    that records argv and makes subvolumes out of plain directories."""
    flag = site.root / "fail-now"
    snap = site.root / "snap" / "repo"
    (site.root / "snap").mkdir()
    config = site.worker_config(
        "w1",
        f"""[btrfs_snapshot]
enable = true
snapshot_path = "{site.root / "snap"}"

[[mirrors]]
name = "repo"
provider = "command"
command = "/bin/sh -c 'date +%s%N > generation; test ! -e {flag}'"
""",
    )
    workdir = str(site.workdir("w1", "repo"))
    site.start_manager()
    site.start_worker(config)
    first = site.wait_job("w1", "repo", lambda j: j.status == "success")
    assert calls(standins) == [
        ["subvolume", "create", workdir],
        ["subvolume", "snapshot", workdir, str(snap)],
    ]
    generation = (snap / "generation").read_text()

    flag.touch()
    assert site.ctl("start", "-w", "w1", "repo").returncode == 0
    site.wait_job("w1", "repo", lambda j: j.status == "failed")
    assert calls(standins)[2:] == [["subvolume", "show", workdir]]
    assert (snap / "generation").read_text() == generation  # the old snapshot is kept

    flag.unlink()
    assert site.ctl("start", "-w", "w1", "repo").returncode == 0
    assert first.last_update is not None
    site.wait_job(
        "w1",
        "repo",
        lambda j: j.status == "success" and j.last_update != first.last_update,
    )
    assert calls(standins)[3:] == [
        ["subvolume", "show", workdir],
        ["subvolume", "show", str(snap)],
        ["subvolume", "delete", str(snap)],
        ["subvolume", "snapshot", workdir, str(snap)],
    ]
    assert (snap / "generation").read_text() != generation


def test_btrfs_refuses_plain_directories(site: Site, standins: Path) -> None:
    """A working dir or snapshot path that exists but is not a subvolume fails the run with
    tunasync's messages.  ``btrfs`` is a stand-in (no Btrfs here)."""
    snapshots = site.root / "snap"
    (snapshots / "taken").mkdir(parents=True)  # a plain dir where the snapshot goes
    plain = site.workdir("w1", "plain")
    plain.mkdir(parents=True)
    config = site.worker_config(
        "w1",
        f"""[btrfs_snapshot]
enable = true
snapshot_path = "{snapshots}"

[[mirrors]]
name = "plain"
provider = "command"
command = "/bin/true"

[[mirrors]]
name = "taken"
provider = "command"
command = "/bin/true"
""",
    )
    site.start_manager()
    site.start_worker(config)
    state = site.wait_job("w1", "plain", lambda j: j.status == "failed")
    assert state.error_msg == (
        f"error exec hook pre-job: path {plain} exists but isn't a Btrfs subvolume"
    )
    state = site.wait_job("w1", "taken", lambda j: j.status == "failed")
    assert state.error_msg == (
        f"error exec hook post-success: path {snapshots / 'taken'} exists and isn't a "
        "Btrfs snapshot"
    )


def test_hooks_are_idle_when_not_enabled(tmp_path: Path) -> None:
    """No system hook unless its section enables it (docker also needs ``docker_image``)."""
    mirror = _mirror(tmp_path, docker_image="standin/x")
    config = tmp_path / "w.toml"
    config.write_text(f'[global]\nname = "w"\nmirror_dir = "{tmp_path}"\n')
    worker = load_worker_config(config)
    assert build_hooks(mirror, worker) == []


# -- layout detection (the layouts this machine does not have) ------------------------------
V1 = [
    "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
    "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
    "32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
]
UNIFIED = "29 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate"
SELF_V1 = "4:memory:/system.slice/mb.service\n3:pids:/system.slice/mb.service\n0::/mb.service\n"


@pytest.mark.parametrize(
    ("mounts", "mode", "track", "memory"),
    [
        (V1, "v1", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory"),
        ([UNIFIED, *V1], "hybrid", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"),
        (V1[1:], "v1", "/sys/fs/cgroup/pids", None),
        ([UNIFIED], None, None, None),  # cgroup2 at unified but no v1 controllers: unusable
        (["20 1 8:1 / / rw - ext4 /dev/sda1 rw"], None, None, None),
    ],
)
def test_layout_detection(
    mounts: list[str], mode: str | None, track: str | None, memory: str | None
) -> None:
    layout = detect_layout("\n".join(mounts), SELF_V1)
    if mode is None:
        assert layout is None
        return
    assert layout is not None
    assert (layout.mode, str(layout.track.mount)) == (mode, track)
    assert (str(layout.memory.mount) if layout.memory else None) == memory
    if layout.memory is not None:
        assert layout.memory.own == "/system.slice/mb.service"
    if mode == "hybrid":
        assert layout.track.own == "/mb.service"


def test_pure_v2_layout_uses_memory_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    mountinfo = f"25 1 0:25 / {tmp_path} rw - cgroup2 cgroup2 rw"
    layout = detect_layout(mountinfo, "0::/system.slice/mb.service\n", root=tmp_path)
    assert layout is not None and layout.mode == "v2"
    assert layout.memory == layout.track and layout.track.own == "/system.slice/mb.service"
    assert layout.memory_file == "memory.max"


def test_docker_passes_only_the_jobs_own_variables_to_rsync(tmp_path: Path) -> None:
    """An rsync job in docker gets its mirror ``env`` and credentials as ``-e``, never the
    worker's environment (which the ``docker`` CLI itself keeps)."""
    from mirrorbus.worker.hooks.docker import docker_run_argv
    from mirrorbus.worker.providers.rsync import rsync_environment

    config = tmp_path / "w.toml"
    config.write_text(
        f'[global]\nname = "w"\nmirror_dir = "{tmp_path}/work"\nlog_dir = "{tmp_path}/log"\n'
        '[docker]\nenable = true\n[[mirrors]]\nname = "r"\nprovider = "rsync"\n'
        'upstream = "rsync://example.org/r/"\nusername = "u"\npassword = "p"\n'
        'docker_image = "img"\n[mirrors.env]\nRSYNC_PROXY = "proxy:3128"\n'
    )
    worker = load_worker_config(config)
    mirror = worker.mirror("r")
    env = rsync_environment(mirror, {"PATH": "/usr/bin", "HOME": "/root", "USER": "root"})
    argv = docker_run_argv("docker", mirror, worker, ["rsync", "-aH"], env, [])
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert pairs == ["RSYNC_PROXY=proxy:3128", "USER=u", "RSYNC_PASSWORD=p"]
    assert argv[-3:] == ["img", "rsync", "-aH"]
