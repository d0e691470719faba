"""The rsync and two-stage-rsync providers, against a real rsync daemon on loopback.

Every job comes from a worker config file loaded with ``load_worker_config`` and runs through
``make_provider`` like the worker does, so the whole path config → argv → process → outcome
is covered.  The daemon (``tests/rsyncd.py``) serves generated trees; assertions are on the
mirror's files, the outcome (ok, exit code, error, size) and the attempt log.

How the partial transfer (exit 23) is provoked: the module is served as ``uid = nobody`` and
holds one ``chmod 000`` file, so the daemon's sender cannot open it (``Permission denied``)
while everything else transfers — what a real upstream with one unreadable file does.
Running the tests as root does not defeat this: the daemon drops to ``nobody`` per module.

How the state between the two stages is checked: the job's ``command`` (the rsync binary
path, a supported key) is a wrapper that runs the real ``rsync`` with the provider's argv and
then copies the mirror tree aside.  So the snapshot after stage 1 is of the real run, with
the real argvs; parsing rsync's itemized output instead would test rsync's reporting, not
the tree, and running only the stage-1 argv would not exercise the provider's sequencing.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rsyncd import Module, RsyncDaemon, rsync_daemon

from mirrorbus.config.worker import WorkerConfig, load_worker_config
from mirrorbus.config.worker_model import STAGE1_PROFILES as CONFIG_PROFILES
from mirrorbus.worker.joblog import HEADER_PREFIX
from mirrorbus.worker.providers.base import AttemptOutcome
from mirrorbus.worker.providers.choose import make_provider
from mirrorbus.worker.providers.rsync import (
    STAGE1_PROFILES,
    RsyncProvider,
    TwoStageRsyncProvider,
    rsync_argv,
    rsync_environment,
    rsync_size,
    two_stage_argvs,
)
from mirrorbus.worker.run import prepare_attempt

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

UP = "rsync://rsync.example.org/debian/"
DIR = "/data/mirrors/debian"
DEFAULT = [
    "-aHvh", "--no-o", "--no-g", "--stats", "--filter", "risk .~tmp~/", "--exclude", ".~tmp~/",
    "--delete", "--delete-after", "--delay-updates", "--safe-links",
]  # fmt: skip
STAGE1 = [
    "-aHvh", "--no-o", "--no-g", "--stats", "--filter", "risk .~tmp~/", "--exclude", ".~tmp~/",
    "--safe-links",
]  # fmt: skip
DEBIAN = [
    "--include=*.diff/", "--include=by-hash/", "--exclude=*.diff/Index", "--exclude=Contents*",
    "--exclude=Packages*", "--exclude=Sources*", "--exclude=Release*", "--exclude=InRelease",
    "--exclude=i18n/*", "--exclude=dep11/*", "--exclude=installer-*/current",
    "--exclude=ls-lR*",
]  # fmt: skip
OLDSTYLE = [
    "--exclude=Packages*", "--exclude=Sources*", "--exclude=Release*", "--exclude=InRelease",
    "--exclude=i18n/*", "--exclude=ls-lR*", "--exclude=dep11/*",
]  # fmt: skip
PARTIAL_LINE = "rsync error: Partial transfer due to error"


def load(tmp_path: Path, mirrors: str, global_extra: str = "") -> WorkerConfig:
    """A worker config file with ``mirrors`` (TOML ``[[mirrors]]`` text), loaded for real."""
    text = (
        "[global]\n"
        'name = "w1"\n'
        f'mirror_dir = "{tmp_path}/mirrors"\n'
        f'log_dir = "{tmp_path}/log/{{{{.Name}}}}"\n' + global_extra + "\n" + mirrors
    )
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return load_worker_config(path)


def job(name: str, upstream: str, extra: str = "", provider: str = "rsync") -> str:
    return (
        f'[[mirrors]]\nname = "{name}"\nprovider = "{provider}"\nupstream = "{upstream}"\n' + extra
    )


async def attempt(config: WorkerConfig, name: str) -> tuple[AttemptOutcome, str]:
    """One attempt of job ``name`` as the worker runs it; the outcome and the log text."""
    mirror = config.mirror(name)
    log, error = prepare_attempt(mirror, datetime.now(UTC))
    assert log is not None and not error, error
    outcome = await make_provider(mirror, config).run_attempt(log)
    return outcome, log.path.read_text()


def commands_run(log: str) -> list[list[str]]:
    """The argv of every command an attempt's log says it ran (its header lines)."""
    prefix = f"{HEADER_PREFIX}command: "
    return [
        shlex.split(line[len(prefix) :]) for line in log.splitlines() if line.startswith(prefix)
    ]


def write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def tree(root: Path) -> dict[str, str]:
    """Every entry below ``root`` (links not followed): kind, mode, content hash or target."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = f"dir {stat.S_IMODE(st.st_mode):o}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                entries[rel] = f"file {stat.S_IMODE(st.st_mode):o} {digest}"
    return entries


def hard_links(root: Path) -> set[frozenset[str]]:
    """Groups of paths sharing an inode."""
    groups: dict[tuple[int, int], set[str]] = {}
    for path in root.rglob("*"):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), set()).add(str(path.relative_to(root)))
    return {frozenset(g) for g in groups.values()}


def total_file_sizes(log: str) -> list[str]:
    return [line.split()[3] for line in log.splitlines() if line.startswith("Total file size:")]


# --------------------------------------------------------------------------------------
# argv parity: every example of docs/tunasync.md §5.2/§5.3, from a config file


def only_argv(tmp_path: Path, extra: str, global_extra: str = "") -> list[str]:
    config = load(tmp_path, job("debian", UP, f'mirror_dir = "{DIR}"\n' + extra), global_extra)
    provider = make_provider(config.mirror("debian"), config)
    assert isinstance(provider, RsyncProvider)
    return provider.argv()


def test_argv_default_ipv6(tmp_path: Path) -> None:
    argv = only_argv(tmp_path, "use_ipv6 = true\nuse_ipv4 = true\n")  # -6 wins
    assert argv == ["rsync", *DEFAULT, "--timeout=120", "-6", UP, DIR]


def test_argv_user_password_ipv4_timeout_extra(tmp_path: Path) -> None:
    extra = (
        'username = "foo"\npassword = "bar"\nuse_ipv4 = true\nrsync_timeout = 30\n'
        'rsync_options = ["--delete-excluded"]\n'
    )
    argv = only_argv(tmp_path, extra)
    assert argv == ["rsync", *DEFAULT, "--timeout=30", "-4", "--delete-excluded", UP, DIR]


def test_argv_override_no_timeout_ipv6_extra(tmp_path: Path) -> None:
    extra = (
        'rsync_override = ["-aHvh", "--no-o", "--no-g", "--stats"]\nrsync_no_timeout = true\n'
        'use_ipv6 = true\nrsync_options = ["--delete-excluded"]\n'
    )
    argv = only_argv(tmp_path, extra)
    override = ["-aHvh", "--no-o", "--no-g", "--stats"]
    assert argv == ["rsync", *override, "-6", "--delete-excluded", UP, DIR]


def test_argv_override_global_local(tmp_path: Path) -> None:
    extra = 'rsync_override = ["--override"]\nrsync_options = ["--local"]\n'
    argv = only_argv(tmp_path, extra, 'rsync_options = ["--global"]\n')
    assert argv == ["rsync", "--override", "--timeout=120", "--global", "--local", UP, DIR]


def test_argv_override_only_ignores_everything_else(tmp_path: Path) -> None:
    extra = (
        'rsync_override = ["--bar", "baz"]\nrsync_override_only = true\nuse_ipv6 = true\n'
        'exclude_file = "/etc/ex"\nrsync_options = ["--local"]\n'
    )
    argv = only_argv(tmp_path, extra, 'rsync_options = ["--global"]\n')
    assert argv == ["rsync", "--bar", "baz", UP, DIR]


def test_argv_command_exclude_file_and_defaults(tmp_path: Path) -> None:
    # a relative exclude_file is taken from the config file's directory; command is a path
    extra = 'command = "/opt/rsync 3/bin/rsync"\nexclude_file = "ex.list"\n'
    argv = only_argv(tmp_path, extra, 'rsync_options = ["--global"]\n')
    assert argv == [
        "/opt/rsync 3/bin/rsync",
        *DEFAULT,
        "--timeout=120",
        "--exclude-from",
        str(tmp_path / "ex.list"),
        "--global",
        UP,
        DIR,
    ]


def test_argv_working_dir_from_global_mirror_dir(tmp_path: Path) -> None:
    config = load(tmp_path, job("debian", UP, 'mirror_subdir = "deb"\n'))
    argv = rsync_argv(config.mirror("debian"), config.rsync_options)
    assert argv[-2:] == [UP, str(tmp_path / "mirrors" / "deb" / "debian")]


@pytest.mark.parametrize(
    ("profile", "stage1_extra"), [("debian", DEBIAN), ("debian-oldstyle", OLDSTYLE)]
)
def test_two_stage_argvs(tmp_path: Path, profile: str, stage1_extra: list[str]) -> None:
    extra = (
        f'mirror_dir = "{DIR}"\nstage1_profile = "{profile}"\nuse_ipv4 = true\n'
        'rsync_timeout = 60\nexclude_file = "/etc/ex"\nrsync_options = ["--delete-excluded"]\n'
    )
    config = load(
        tmp_path, job("debian", UP, extra, "two-stage-rsync"), 'rsync_options = ["--global"]\n'
    )
    provider = make_provider(config.mirror("debian"), config)
    assert isinstance(provider, TwoStageRsyncProvider)
    stage1, stage2 = provider.argvs()
    tail = ["--timeout=60", "-4", "--exclude-from", "/etc/ex"]
    assert stage1 == ["rsync", *STAGE1, *stage1_extra, *tail, UP, DIR]
    assert stage2 == ["rsync", *DEFAULT, "--delete-excluded", *tail, UP, DIR]


def test_two_stage_no_timeout_ipv6(tmp_path: Path) -> None:
    extra = f'mirror_dir = "{DIR}"\nstage1_profile = "debian"\nuse_ipv6 = true\n'
    extra += "rsync_no_timeout = true\n"
    config = load(tmp_path, job("debian", UP, extra, "two-stage-rsync"))
    stage1, stage2 = two_stage_argvs(config.mirror("debian"))
    assert stage1 == ["rsync", *STAGE1, *DEBIAN, "-6", UP, DIR]
    assert stage2 == ["rsync", *DEFAULT, "-6", UP, DIR]


def test_profiles_are_the_ones_the_loader_accepts() -> None:
    assert tuple(STAGE1_PROFILES) == CONFIG_PROFILES


def test_environment_credentials_without_touching_the_mirror(tmp_path: Path) -> None:
    extra = 'username = "foo"\npassword = "bar"\n[mirrors.env]\nUSER = "env-user"\nX = "1"\n'
    mirror = load(tmp_path, job("debian", UP, extra)).mirror("debian")
    env = rsync_environment(mirror, {"PATH": "/bin", "X": "0", "HOME": "/root"})
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "X": "1",
        "USER": "foo",
        "RSYNC_PASSWORD": "bar",
    }
    assert dict(mirror.env) == {"USER": "env-user", "X": "1"}  # tunasync wrote into it


@pytest.mark.parametrize(
    ("log", "size"),
    [
        ("Total file size: 1.33T bytes\n", "1.33T"),
        ("Total file size: 1.24M bytes\nTotal file size: 2.50G bytes\n", "2.50G"),
        ("Total file size: 999 bytes\n", "999"),
        ("Total file size: 1,24M bytes\n", "1.24M"),  # a locale's decimal comma
        ("Total file size: 1,235,801 bytes\n", "1.24M"),  # no -h: thousands separators
        ("Total file size: 1.235.801 bytes\n", "1.24M"),
        ("Total file size: 0 bytes\n", "0"),
        ("  Total file size: 5 bytes\nTotal transferred file size: 9 bytes\n", ""),
        ("", ""),
    ],
)
def test_size_from_stats(log: str, size: str) -> None:
    assert rsync_size(log) == size


# --------------------------------------------------------------------------------------
# real syncs against the daemon


@pytest.fixture(scope="module")
def daemon() -> Iterator[RsyncDaemon]:
    modules = [
        Module("pub"),
        Module("partial", {"uid": "nobody", "gid": "nogroup"}),
        Module("auth", secrets={"mirror": "s3cret"}),
        Module("debian"),
    ]
    with rsync_daemon(modules) as d:
        yield d


def make_pub(root: Path) -> None:
    rnd = random.Random(7)
    write(root / "README", "hello\n")
    write(root / "big.bin", rnd.randbytes(1_500_000))
    write(root / "docs/guide.txt", "guide v1\n")
    write(root / "docs/deep/nested.txt", "nested\n")
    write(root / "bin/run.sh", "#!/bin/sh\n", 0o755)
    write(root / "hard/one.txt", "shared inode\n")
    os.link(root / "hard/one.txt", root / "hard/two.txt")
    (root / "links").mkdir()
    os.symlink("../docs/guide.txt", root / "links/to-file")
    os.symlink("../docs", root / "links/to-dir")
    os.symlink("/etc/hostname", root / "links/absolute")  # unsafe: leaves the tree
    os.symlink("../../../outside.txt", root / "links/escape")  # unsafe: climbs out
    write(root / "private/secret.txt", "not for mirrors\n")
    write(root / "notes.skip", "excluded by pattern\n")


UNSAFE_OR_EXCLUDED = {"links/absolute", "links/escape", "private", "private/secret.txt"}
UNSAFE_OR_EXCLUDED |= {"notes.skip"}


def expected(source: Path) -> dict[str, str]:
    return {k: v for k, v in tree(source).items() if k not in UNSAFE_OR_EXCLUDED}


@pytest.mark.e2e
async def test_sync_mirrors_the_tree_then_deletes(tmp_path: Path, daemon: RsyncDaemon) -> None:
    source = daemon.path("pub")
    make_pub(source)
    (tmp_path / "exclude.list").write_text("/private/\n*.skip\n")
    config = load(tmp_path, job("pub", daemon.url("pub"), 'exclude_file = "exclude.list"\n'))
    mirror_dir = config.mirror("pub").working_dir
    write(mirror_dir / "stray.txt", "not upstream\n")  # --delete
    write(mirror_dir / ".~tmp~/half.bin", "left by a killed run\n")  # risk .~tmp~/

    outcome, log = await attempt(config, "pub")

    assert outcome == AttemptOutcome(ok=True, exit_code=0, size="1.50M")
    assert tree(mirror_dir) == expected(source)
    # The log opens with the exact command, where it ran and what it was given.
    assert log.startswith(f"{HEADER_PREFIX}command: rsync ")
    assert commands_run(log) == [make_provider(config.mirror("pub"), config).argv()]
    assert f"{HEADER_PREFIX}working dir: {mirror_dir}\n" in log
    assert hard_links(mirror_dir) == {frozenset({"hard/one.txt", "hard/two.txt"})}
    assert total_file_sizes(log)[-1] == "1.50M"
    assert 'ignoring unsafe symlink "links/absolute"' in log
    assert "rsync error" not in log

    (source / "README").unlink()
    for path in sorted((source / "docs/deep").iterdir()):
        path.unlink()
    (source / "docs/deep").rmdir()
    write(source / "docs/guide.txt", "guide v2, longer\n")
    write(source / "new.txt", "new\n")

    outcome, log = await attempt(config, "pub")

    assert outcome.ok and outcome.exit_code == 0
    assert tree(mirror_dir) == expected(source)
    assert not (mirror_dir / "README").exists() and not (mirror_dir / "docs/deep").exists()
    assert "deleting README" in log


@pytest.fixture(scope="module")
def partial_tree(daemon: RsyncDaemon) -> Path:
    root = daemon.path("partial")
    write(root / "ok.txt", "readable\n")
    write(root / "sub/ok2.txt", "readable too\n")
    write(root / "locked.bin", "nobody may read this\n", 0o000)
    return root


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("codes", "ok"),
    [
        ("rsync_success_exit_codes = [23, 24]\n", True),
        ("success_exit_codes = [23]\n", True),
        ("", False),
        ("rsync_success_exit_codes = [24]\n", False),
    ],
)
async def test_partial_transfer_exit_23(
    tmp_path: Path, daemon: RsyncDaemon, partial_tree: Path, codes: str, ok: bool
) -> None:
    config = load(tmp_path, job("partial", daemon.url("partial"), codes))
    mirror_dir = config.mirror("partial").working_dir

    outcome, log = await attempt(config, "partial")

    assert outcome.exit_code == 23
    assert outcome.ok is ok
    assert "Permission denied" in log
    assert (mirror_dir / "ok.txt").read_text() == "readable\n"
    assert (mirror_dir / "sub/ok2.txt").exists() and not (mirror_dir / "locked.bin").exists()
    if ok:
        assert (outcome.error, outcome.size) == ("", rsync_size(log))
        assert outcome.size and PARTIAL_LINE not in log
    else:
        assert outcome.error == "exit status 23: Partial transfer due to error"
        assert outcome.size == ""
        assert log.splitlines()[-1] == PARTIAL_LINE


def test_global_rsync_codes_reach_rsync_jobs_only(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        job("r", "rsync://h/r/") + job("c", "", 'command = "true"\n', "command"),
        "dangerous_global_rsync_success_exit_codes = [23, 24]\n",
    )
    assert config.mirror("r").success_exit_codes == (23, 24)
    assert config.mirror("c").success_exit_codes == ()


@pytest.mark.e2e
@pytest.mark.parametrize(("password", "ok"), [("s3cret", True), ("wrong", False)])
async def test_credentials_through_rsync_password(
    tmp_path: Path, daemon: RsyncDaemon, password: str, ok: bool
) -> None:
    write(daemon.path("auth") / "members-only.txt", "welcome\n")
    extra = f'username = "mirror"\npassword = "{password}"\n'
    config = load(tmp_path, job("auth", daemon.url("auth"), extra))
    target = config.mirror("auth").working_dir / "members-only.txt"

    outcome, log = await attempt(config, "auth")

    assert outcome.ok is ok
    environment = next(
        ln for ln in log.splitlines() if ln.startswith(f"{HEADER_PREFIX}environment")
    )
    assert "RSYNC_PASSWORD" in environment.split()  # the key is named, its value never
    assert password not in log
    if ok:
        assert target.read_text() == "welcome\n"
    else:
        assert not target.exists()
        assert outcome.exit_code == 5
        assert outcome.error == "exit status 5: Error starting client-server protocol"
        assert "auth failed" in log
        assert log.splitlines()[-1] == "rsync error: Error starting client-server protocol"


# --------------------------------------------------------------------------------------
# two stages on an apt-style tree

APT_INDEXES = [
    "dists/stable/Release",
    "dists/stable/InRelease",
    "dists/stable/main/binary-amd64/Packages",
    "dists/stable/main/binary-amd64/Packages.gz",
    "dists/stable/main/binary-amd64/Packages.xz",
    "dists/stable/main/i18n/Translation-en",
    "dists/stable/main/Contents-amd64.gz",
    "dists/stable/main/installer-amd64/current",
    "ls-lR.gz",
]
APT_PACKAGES = [
    "pool/main/x/xx/xx_1.0_amd64.deb",
    "pool/main/y/yy/yy_2.0_all.deb",
    "dists/stable/main/binary-amd64/by-hash/SHA256/0123abcd",
    "dists/stable/main/installer-amd64/20240101/images/netboot.tar.gz",
]
OLD_DEB = "pool/main/o/old/old_0.9_amd64.deb"

WRAPPER = """#!/bin/sh
# the real rsync with the provider's argv, then a copy of the mirror tree as it is now
rsync "$@"
rc=$?
for dest; do :; done
n=$(ls "$SNAPSHOTS" | wc -l)
cp -a "$dest" "$SNAPSHOTS/after-$((n + 1))"
exit $rc
"""


def make_apt(root: Path) -> None:
    rnd = random.Random(3)
    for path in APT_PACKAGES:
        write(root / path, rnd.randbytes(2000))
    for path in APT_INDEXES:
        if not path.endswith("current"):
            write(root / path, f"v2 index {path}\n" + "Package: xx\n" * 20_000)
    os.symlink("20240101", root / "dists/stable/main/installer-amd64/current")


def two_stage_config(tmp_path: Path, upstream: str) -> tuple[WorkerConfig, Path]:
    wrapper = tmp_path / "rsync-and-snapshot"
    write(wrapper, WRAPPER, 0o755)
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    extra = (
        f'command = "{wrapper}"\nstage1_profile = "debian"\n'
        f'[mirrors.env]\nSNAPSHOTS = "{snapshots}"\n'
    )
    return load(tmp_path, job("debian", upstream, extra, "two-stage-rsync")), snapshots


@pytest.mark.e2e
async def test_two_stage_packages_first_indexes_and_deletions_last(
    tmp_path: Path, daemon: RsyncDaemon
) -> None:
    source = daemon.path("debian")
    make_apt(source)
    config, snapshots = two_stage_config(tmp_path, daemon.url("debian"))
    mirror_dir = config.mirror("debian").working_dir
    write(mirror_dir / OLD_DEB, "gone upstream\n")
    write(mirror_dir / "dists/stable/Release", "v1 release, names old_0.9\n")

    outcome, log = await attempt(config, "debian")

    assert sorted(p.name for p in snapshots.iterdir()) == ["after-1", "after-2"]
    stage1 = snapshots / "after-1"
    for path in APT_PACKAGES:  # new packages are there before any index names them
        assert (stage1 / path).read_bytes() == (source / path).read_bytes(), path
    assert (stage1 / OLD_DEB).exists()  # nothing deleted yet: old indexes still name it
    assert (stage1 / "dists/stable/Release").read_text() == "v1 release, names old_0.9\n"
    for path in APT_INDEXES[1:]:
        assert not (stage1 / path).exists() and not (stage1 / path).is_symlink(), path

    assert outcome.ok and outcome.exit_code == 0
    assert tree(mirror_dir) == tree(source)  # stage 2: indexes in, old package out
    sizes = total_file_sizes(log)
    assert len(sizes) == 2 and sizes[0] != sizes[1]
    stages = commands_run(log)  # each stage's header, in order, before its output
    assert [argv[0] for argv in stages] == [str(tmp_path / "rsync-and-snapshot")] * 2
    assert stages[0] != stages[1] and stages[1][-2:] == stages[0][-2:]
    assert outcome.size == sizes[1] and outcome.size.endswith("M")
    assert f"deleting {OLD_DEB}" in log


@pytest.mark.e2e
async def test_two_stage_failed_stage1_skips_stage2(tmp_path: Path, daemon: RsyncDaemon) -> None:
    config, snapshots = two_stage_config(tmp_path, daemon.url("no-such-module"))

    outcome, log = await attempt(config, "debian")

    assert [p.name for p in snapshots.iterdir()] == ["after-1"]
    assert not outcome.ok and outcome.exit_code == 5
    assert outcome.error == "stage 1: exit status 5: Error starting client-server protocol"
    assert "Unknown module 'no-such-module'" in log
    assert log.splitlines()[-1] == "rsync error: Error starting client-server protocol"


# --------------------------------------------------------------------------------------
# the process side, with a stand-in rsync binary (``command`` is the binary's path)

FAKE = """#!/bin/sh
printf '%s\\n' "$@" > "$OUT/argv.$$"
env > "$OUT/env.$$"
{body}
"""


def fake(tmp_path: Path, provider: str, body: str, extra: str = "") -> WorkerConfig:
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "fake-rsync"
    write(script, FAKE.format(body=body), 0o755)
    if provider == "two-stage-rsync":
        extra += 'stage1_profile = "debian-oldstyle"\n'
    extra = f'command = "{script}"\n{extra}[mirrors.env]\nOUT = "{out}"\n'
    return load(tmp_path, job("j", "rsync://h/j/", extra, provider), 'rsync_options = ["-g1"]\n')


def recorded(tmp_path: Path, kind: str) -> list[list[str]]:
    files = sorted((tmp_path / "out").glob(f"{kind}.*"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_text().splitlines() for p in files]


@pytest.mark.e2e
async def test_process_gets_the_argv_and_environment(tmp_path: Path) -> None:
    extra = 'username = "u"\npassword = "p"\n'
    config = fake(tmp_path, "rsync", "echo 'Total file size: 2,048 bytes'", extra)
    mirror = config.mirror("j")

    outcome, _ = await attempt(config, "j")

    assert outcome == AttemptOutcome(ok=True, exit_code=0, size="2.05K")
    [argv] = recorded(tmp_path, "argv")
    assert argv == rsync_argv(mirror, ["-g1"])[1:]
    assert argv[-3:] == ["-g1", "rsync://h/j/", str(mirror.working_dir)]
    [env] = recorded(tmp_path, "env")
    assert {"USER=u", "RSYNC_PASSWORD=p", f"OUT={tmp_path / 'out'}"} <= set(env)
    assert not [line for line in env if line.startswith("TUNASYNC_")]
    assert dict(mirror.env) == {"OUT": str(tmp_path / "out")}


@pytest.mark.e2e
async def test_two_stage_runs_both_argvs_in_order_into_one_log(tmp_path: Path) -> None:
    body = 'echo "Total file size: $(ls "$OUT" | wc -l)00 bytes"'
    config = fake(tmp_path, "two-stage-rsync", body, 'rsync_options = ["--x"]\n')

    outcome, log = await attempt(config, "j")

    stage1, stage2 = two_stage_argvs(config.mirror("j"))
    assert recorded(tmp_path, "argv") == [stage1[1:], stage2[1:]]
    assert "-g1" not in stage1 + stage2  # [global] rsync_options: rsync jobs only
    assert total_file_sizes(log) == ["200", "400"]
    assert outcome == AttemptOutcome(ok=True, exit_code=0, size="400")


@pytest.mark.e2e
async def test_unknown_exit_code_has_no_rsync_error_line(tmp_path: Path) -> None:
    outcome, log = await attempt(fake(tmp_path, "rsync", "exit 42"), "j")
    assert outcome == AttemptOutcome(ok=False, exit_code=42, error="exit status 42")
    assert "rsync error" not in log


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("provider", "body", "error"),
    [
        ("rsync", "exec sleep 30", "timeout after 1s"),
        ("two-stage-rsync", "sleep 0.6", "stage 2: timeout after 1s"),  # one deadline for both
    ],
)
async def test_timeout_covers_the_whole_attempt(
    tmp_path: Path, provider: str, body: str, error: str
) -> None:
    config = fake(tmp_path, provider, body, "timeout = 1\n")
    started = time.monotonic()

    outcome, _ = await attempt(config, "j")

    assert (outcome.ok, outcome.exit_code, outcome.error) == (False, None, error)
    assert time.monotonic() - started < 4
