"""A typo in any config file (worker, manager, project, ctl) gives the same warning line on
stderr: the file, the section or job, the key, that it is ignored, and what is known there.

The config still means what it meant: an unknown key is dropped, never an error, and a valid
file warns about nothing.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorbus.config.ctl import ctl_settings
from mirrorbus.config.site import (
    CTL_SECTIONS,
    MANAGER_SECTIONS,
    manager_config,
    project_config,
    read_config,
)
from mirrorbus.config.worker import load_worker_config
from mirrorbus.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

WORKER = """
[global]
name = "w1"
mirror_dir = "{root}/mirrors"
log_dir = "{root}/logs/{{{{.Name}}}}"

[[mirrors]]
name = "hello"
provider = "command"
upstream = "https://example.org/"
command = "/bin/true"
"""


def bus(pki_dir: Path, role: str, extra: str = "") -> str:
    return (
        '[bus]\nurl = "tls://127.0.0.1:1"\n'  # nothing listens there: refused at once
        f'ca_cert = "{pki_dir / "ca.crt"}"\n'
        f'cert = "{pki_dir / f"{role}.crt"}"\nkey = "{pki_dir / f"{role}.key"}"\n' + extra
    )


def write(tmp_path: Path, kind: str, pki_dir: Path, extra_bus: str, rest: str) -> Path:
    """A valid config of ``kind`` with ``extra_bus`` added to its [bus] and ``rest`` after."""
    head = {
        "worker": WORKER.format(root=tmp_path) + bus(pki_dir, "w1", extra_bus),
        "manager": bus(pki_dir, "manager", extra_bus)
        + f'[database]\nurl = "sqlite:///{tmp_path}/view.db"\n',
        "project": bus(pki_dir, "reader", extra_bus)
        + f'[database]\nurl = "sqlite:///{tmp_path}/project.db"\n',
        "ctl": bus(pki_dir, "admin", extra_bus),
    }[kind]
    path = tmp_path / f"{kind}.toml"
    path.write_text(head + rest)
    return path


def warnings_of(kind: str, path: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Load ``path`` as its program does; the warnings it gives, in order."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mirrorbus.config"):
        if kind == "worker":
            return list(load_worker_config(path).warnings)
        if kind == "manager":
            manager_config(path, None, None, "m1")
        elif kind == "project":
            project_config(path, None, None)
        else:
            ctl_settings(path, environ={})
    return [r.getMessage() for r in caplog.records if r.name == "mirrorbus.config"]


KNOWN_SECTIONS = {
    "worker": "btrfs_snapshot, bus, cgroup, docker, global, include, mirrors, upstream_limits, zfs",
    "manager": "bus, database, files, http, manager, mirrorz, streams, tunasync_api",
    "project": "bus, database, files, http, mirrorz",
    "ctl": "bus",
}


@pytest.mark.parametrize("kind", ["worker", "manager", "project", "ctl"])
def test_the_same_typos_give_the_same_lines_in_every_kind_of_file(
    kind: str, tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path, kind, pki_dir, 'urll = "tls://elsewhere:4222"\n', "[frobnicate]\nx = 1\n"
    )
    assert sorted(warnings_of(kind, path, caplog)) == [
        f"{path}: [bus]: key 'urll': unknown key, ignored (did you mean 'url'?)",
        f"{path}: key 'frobnicate': unknown section or key, ignored "
        f"(known: {KNOWN_SECTIONS[kind]})",
    ]


def test_a_manager_config_warns_about_keys_of_its_own_sections(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What used to be silent: ``replica`` for ``replicas`` kept one replica, ``[htpp]`` kept
    the HTTP server off, and nothing said why."""
    path = write(
        tmp_path,
        "manager",
        pki_dir,
        "",
        "[streams]\nreplica = 3\nmax_age = 30\n[htpp]\nenable = true\n",
    )
    assert sorted(warnings_of("manager", path, caplog)) == [
        f"{path}: [streams]: key 'max_age': unknown key, ignored (did you mean 'max_age_days'?)",
        f"{path}: [streams]: key 'replica': unknown key, ignored (did you mean 'replicas'?)",
        f"{path}: key 'htpp': unknown section or key, ignored (did you mean 'http'?)",
    ]
    config = manager_config(path, None, None, "m1")  # ignored, as a worker's unknown keys are
    assert config.streams.replicas == 1 and config.streams.max_age == 0
    assert not config.outputs.http.enable


def test_a_project_config_warns_about_the_managers_sections(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "project", pki_dir, "", '[files]\njobs = "jobs.json"\n[streams]\n')
    assert sorted(warnings_of("project", path, caplog)) == [
        f"{path}: [files]: key 'jobs': unknown key, ignored (did you mean 'jobs_json'?)",
        f"{path}: key 'streams': unknown section or key, ignored "
        "(known: bus, database, files, http, mirrorz)",
    ]


@pytest.mark.parametrize(
    ("section", "typo", "meant"),
    [
        ("tunasync_api", "lisen", "listen"),
        ("http", "enabel", "enable"),
        ("manager", "nmae", "name"),
        ("mirrorz", "sites", "site"),
    ],
)
def test_a_typo_in_each_section_of_a_manager_config_warns_alike(
    section: str,
    typo: str,
    meant: str,
    tmp_path: Path,
    pki_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's ``[tunasync_api]`` and the outputs' sections say it as ``[bus]`` does."""
    path = write(tmp_path, "manager", pki_dir, "", f"[{section}]\n{typo} = 1\n")
    assert warnings_of("manager", path, caplog) == [
        f"{path}: [{section}]: key '{typo}': unknown key, ignored (did you mean '{meant}'?)"
    ]


WRONG_TYPES = [
    ("manager", '[streams]\nreplicas = "3"\n', "streams.replicas", "an integer, got string '3'"),
    ("manager", "[tunasync_api]\nlisten = 1\n", "tunasync_api.listen", "a string, got integer 1"),
    ("manager", "[manager]\nname = 3\n", "manager.name", "a string, got integer 3"),
    ("project", '[http]\nenable = "yes"\n', "http.enable", "true or false, got string 'yes'"),
    ("project", "[files]\njobs_json = true\n", "files.jobs_json", "a string, got boolean true"),
]


@pytest.mark.parametrize(("kind", "rest", "key", "problem"), WRONG_TYPES)
def test_a_wrong_type_is_the_same_one_line_error_in_every_file(
    kind: str,
    rest: str,
    key: str,
    problem: str,
    tmp_path: Path,
    pki_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's checks of TOML types, in a manager's or a project's own sections: the
    file, the key, what it must be and what it is."""
    path = write(tmp_path, kind, pki_dir, "", rest)
    with pytest.raises(ConfigError) as info:
        warnings_of(kind, path, caplog)
    assert str(info.value) == f"{path}: key '{key}': expected {problem}"


def test_a_worker_config_that_fails_carries_the_warnings_found_before(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(WORKER.format(root=tmp_path).replace("[global]", "[globl]"))
    with pytest.raises(ConfigError) as info:
        load_worker_config(path)
    assert str(info.value) == f"{path}: [global]: key 'name': missing: the worker needs a name"
    assert info.value.warnings == (
        f"{path}: key 'globl': unknown section or key, ignored (did you mean 'global'?)",
    )


def test_valid_files_warn_about_nothing(
    tmp_path: Path, pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    everything = (
        '[manager]\nname = "m1"\n[streams]\nmax_age_days = 1\nreplicas = 1\n'
        '[http]\nenable = true\nlisten = "127.0.0.1:14280"\nallow_origin = "*"\n'
        f'[files]\njobs_json = "{tmp_path}/jobs.json"\n'
        '[tunasync_api]\nlisten = "127.0.0.1:14242"\nallow = ["127.0.0.1/32"]\n'
    )
    for kind, rest in (("worker", ""), ("manager", everything), ("project", ""), ("ctl", "")):
        assert warnings_of(kind, write(tmp_path, kind, pki_dir, "", rest), caplog) == [], kind
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mirrorbus.config"):
        read_config(EXAMPLES / "systemd" / "manager.toml", MANAGER_SECTIONS)
        assert caplog.records == []
        read_config(EXAMPLES / "systemd" / "manager.toml", CTL_SECTIONS)  # not a ctl's file
        assert len(caplog.records) == 3  # [database], [streams], [http]
    assert load_worker_config(EXAMPLES / "systemd" / "worker-mirror1.toml").warnings == ()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("kind", "argv", "typo", "section", "status"),
    [
        ("worker", ["worker", "--check", "-c", "{}"], "[includ]", "include", 0),
        ("manager", ["manager", "dead-letters", "-c", "{}"], "[databse]", "database", 2),
        ("project", ["project", "jobs-json", "-c", "{}"], "[databse]", "database", 2),
        ("ctl", ["ctl", "-c", "{}", "list"], "[buss]", "bus", 2),
    ],
)
def test_each_program_says_it_on_stderr(
    kind: str,
    argv: list[str],
    typo: str,
    section: str,
    status: int,
    tmp_path: Path,
    pki_dir: Path,
) -> None:
    """The real programs, with ``[bus] url`` misspelt and a misspelt section.  A manager or
    project then has no view and the ctl no server: they fail, after the warnings that say
    why (a worker's check needs neither)."""
    path = write(tmp_path, kind, pki_dir, "", "")
    text = path.read_text().replace("\nurl = ", "\nurll = ", 1)
    if f"[{section}]" in text and section != "bus":
        text = text.replace(f"[{section}]", typo)
    else:
        text += f"{typo}\n"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "mirrorbus", *(a.format(path) for a in argv)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == status, done.stderr
    assert (": error: " in lines[-1]) == (status != 0), done.stderr
    for warning in (
        f"{path}: [bus]: key 'urll': unknown key, ignored (did you mean 'url'?)",
        f"{path}: key '{typo[1:-1]}': unknown section or key, ignored (did you mean '{section}'?)",
    ):
        assert any(line.endswith(warning) for line in lines), (warning, done.stderr)


@pytest.mark.e2e
def test_a_worker_that_cannot_load_shows_the_warnings_first(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(WORKER.format(root=tmp_path).replace("[global]", "[globl]"))
    done = subprocess.run(
        [sys.executable, "-m", "mirrorbus", "worker", "--check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    warning, error = done.stderr.splitlines()
    assert warning.endswith(
        f"{path}: key 'globl': unknown section or key, ignored (did you mean 'global'?)"
    )
    assert error == (
        f"mirrorbus worker: error: {path}: [global]: key 'name': missing: the worker needs a name"
    )
