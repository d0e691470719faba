"""Worker configs as tunasync users write them load unchanged, with the same jobs, working
directories, log directories and commands that tunasync derives (docs/tunasync.md §3.1, §5).

The files in ``tests/tunasync_configs/`` are modelled on tunasync's own shipped examples:
``docs/zh_CN/workers.conf`` (TUNA's production style: docker jobs, env tables, rsync with
memory limits, an ssh upstream, two-stage Debian) and ``tests/worker.conf`` with its
``mirrors/*.conf`` includes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mirrorbus.config.worker import load_worker_config
from mirrorbus.worker.providers.choose import make_provider
from mirrorbus.worker.providers.rsync import RsyncProvider, TwoStageRsyncProvider

HERE = Path(__file__).parent / "tunasync_configs"


def test_production_style_workers_conf() -> None:
    cfg = load_worker_config(HERE / "workers.conf")
    assert cfg.name == "mirror_worker" and cfg.concurrent == 10
    assert [m.name for m in cfg.mirrors] == [
        "adobe-fonts",
        "AdoptOpenJDK",
        "alpine",
        "anaconda",
        "bioconductor",
        "chef",
        "debian",
        "docker-ce",
        "elvish",
        "git-test",
        "pypi",
        "ubuntu",
    ]
    assert any("[manager] is not used" in w for w in cfg.warnings)
    assert any("[server] is not used" in w for w in cfg.warnings)
    by = {m.name: m for m in cfg.mirrors}
    for m in cfg.mirrors:
        assert m.working_dir == Path("/srv/tunasync") / m.name
        assert m.log_dir == Path("/srv/tunasync/log/tunasync") / m.name
    assert by["adobe-fonts"].interval == timedelta(days=1)
    assert by["pypi"].interval == timedelta(minutes=5)
    assert by["alpine"].interval == timedelta(hours=2)  # the global default
    assert by["anaconda"].command == ("/home/scripts/anaconda.py", "--delete")
    assert by["docker-ce"].command == (
        "timeout",
        "3h",
        "/home/scripts/docker-ce.py",
        "--workers",
        "10",
        "--fast-skip",
    )
    assert by["alpine"].memory_limit == 256 * 1024 * 1024
    assert by["elvish"].success_exit_codes == (23, 24)
    assert dict(by["git-test"].env) == {
        "RSYNC_PROXY": "127.0.0.1:1080",
        "TUNASYNC_LFTP_OPTIONS": "--only-newer",
    }
    assert by["git-test"].fail_on_match is not None and by["git-test"].size_pattern is not None
    assert by["pypi"].docker_options == ("--cpus", "4")
    assert cfg.docker.options == ("--cpus", "20") and cfg.cgroup.group == "tunasync"
    assert by["adobe-fonts"].exec_on_success == (
        ("bash", "-c", "echo ${TUNASYNC_JOB_EXIT_STATUS} > ${TUNASYNC_WORKING_DIR}/exit_status"),
    )

    # The rsync argument lists tunasync would run.
    bio = make_provider(by["bioconductor"], cfg)
    assert isinstance(bio, RsyncProvider)
    assert bio.argv() == [
        "rsync",
        "-aHvh",
        "--no-o",
        "--no-g",
        "--stats",
        "--filter",
        "risk .~tmp~/",
        "--exclude",
        ".~tmp~/",
        "--delete",
        "--delete-after",
        "--delay-updates",
        "--safe-links",
        "--timeout=120",
        "--exclude-from",
        "/etc/excludes/bioconductor.txt",
        "--rsh=ssh -i /root/id_rsa -o PasswordAuthentication=no -l sync",
        "master.bioconductor.org:./",
        "/srv/tunasync/bioconductor",
    ]
    ubuntu = make_provider(by["ubuntu"], cfg)
    assert isinstance(ubuntu, TwoStageRsyncProvider)
    stage1, stage2 = ubuntu.argvs()
    assert stage1[:9] == [
        "rsync",
        "-aHvh",
        "--no-o",
        "--no-g",
        "--stats",
        "--filter",
        "risk .~tmp~/",
        "--exclude",
        ".~tmp~/",
    ]
    assert "--include=*.diff/" in stage1 and "--delete" not in stage1
    assert stage2[-5:] == [
        "--delete-excluded",
        "--timeout=120",
        "-4",
        "rsync://archive.ubuntu.com/ubuntu/",
        "/srv/tunasync/ubuntu",
    ]


def test_tunasync_test_worker_conf_with_includes() -> None:
    cfg = load_worker_config(HERE / "worker.conf")
    assert [m.name for m in cfg.mirrors] == ["AOSP", "debian", "fedora"]  # lexical includes
    by = {m.name: m for m in cfg.mirrors}
    assert by["AOSP"].is_master is False and by["AOSP"].role == "slave"
    assert by["AOSP"].working_dir == Path("/tmp/tunasync/git/AOSP")
    assert by["AOSP"].log_dir == Path("/tmp/tunasync/log/tunasync/AOSP")
    assert by["debian"].log_dir == Path("/tmp/tunasync/log/tunasync/debian")
    assert by["fedora"].command == ("/tmp/tunasync/bin/myrsync.sh",)
    assert by["fedora"].exclude_file == Path("/etc/tunasync/fedora.exclude")
    assert all(m.interval == timedelta(minutes=2) for m in cfg.mirrors)
    assert all(m.retry == 2 for m in cfg.mirrors)  # tunasync's defaultMaxRetry
