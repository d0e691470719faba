"""The worker config loader against tunasync's format (docs/tunasync.md §3.1) and our fixes.

Each test writes a real file and loads it; assertions are on the resolved result or on the
one-line ConfigError a user would see.
"""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from mirrorbus.config.schema import GLOBAL_KEYS, MIRROR_KEYS
from mirrorbus.config.worker import (
    DEFAULT_CONCURRENT,
    MirrorConfig,
    WorkerConfig,
    check_report,
    load_worker_config,
)
from mirrorbus.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "worker.toml"

GLOBAL = """
[global]
name = "w1"
mirror_dir = "/data/mirrors"
log_dir = "/var/log/mb/{{.Name}}"
"""

CMD = """
[[mirrors]]
name = "hello"
provider = "command"
command = "/bin/true"
"""


def write(directory: Path, text: str, name: str = "worker.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(directory: Path, text: str) -> WorkerConfig:
    return load_worker_config(write(directory, text))


def only(cfg: WorkerConfig) -> MirrorConfig:
    assert len(cfg.mirrors) == 1
    return cfg.mirrors[0]


def fails(directory: Path, text: str) -> ConfigError:
    path = write(directory, text)
    with pytest.raises(ConfigError) as info:
        load_worker_config(path)
    err = info.value
    assert err.exit_code == 2
    assert str(path) in str(err) and "\n" not in str(err)
    return err


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_of_a_minimal_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, GLOBAL + CMD)
    assert cfg.name == "w1"
    assert cfg.path == tmp_path / "worker.toml"
    assert cfg.concurrent == DEFAULT_CONCURRENT == 10
    assert (cfg.interval, cfg.retry, cfg.timeout) == (timedelta(0), 2, None)
    assert cfg.mirror_dir == Path("/data/mirrors")
    assert cfg.log_dir == "/var/log/mb/{{.Name}}"
    assert cfg.bus.urls == () and cfg.bus.prefix == "mirrorbus" and cfg.bus.cert is None
    assert not cfg.cgroup.enable and not cfg.docker.enable and not cfg.zfs.enable
    assert cfg.warnings == ()
    m = only(cfg)
    assert m.command == ("/bin/true",)
    assert (m.interval, m.retry, m.timeout) == (timedelta(0), 2, None)
    assert m.working_dir == Path("/data/mirrors/hello")
    assert m.log_dir == Path("/var/log/mb/hello")
    assert (m.role, m.is_master) == ("master", True)
    assert m.success_exit_codes == () and dict(m.env) == {}
    assert m.size_pattern is None and m.fail_on_match is None
    assert m.rsync_timeout == 120 and m.memory_limit is None and m.snapshot_path is None


def test_provider_defaults_to_rsync(tmp_path: Path) -> None:
    m = only(load(tmp_path, GLOBAL + '[[mirrors]]\nname = "d"\nupstream = "rsync://h/d/"\n'))
    assert m.provider == "rsync" and m.command == ("rsync",)


@pytest.mark.parametrize(
    ("line", "expected"), [("", 10), ("concurrent = 0", 10), ("concurrent = 3", 3)]
)
def test_concurrent_zero_or_missing_means_ten(tmp_path: Path, line: str, expected: int) -> None:
    assert load(tmp_path, GLOBAL + line + "\n" + CMD).concurrent == expected


def test_interval_retry_timeout_fall_back_to_global(tmp_path: Path) -> None:
    text = (
        GLOBAL
        + "interval = 240\nretry = 3\ntimeout = 86400\n"
        + CMD
        + """
[[mirrors]]
name = "own"
provider = "command"
command = "/bin/true"
interval = 720
retry = 1
timeout = 3600
"""
    )
    cfg = load(tmp_path, text)
    assert (cfg.interval, cfg.retry, cfg.timeout) == (timedelta(hours=4), 3, timedelta(days=1))
    inherited, own = cfg.mirrors
    assert (inherited.interval, inherited.retry, inherited.timeout) == (
        timedelta(hours=4),
        3,
        timedelta(days=1),
    )
    assert (own.interval, own.retry, own.timeout) == (timedelta(hours=12), 1, timedelta(hours=1))


# -- errors -----------------------------------------------------------------------------------

# fmt: off
BAD = [
    # (config text after [global], job, key, words in the problem)
    ('[[mirrors]]\nname = "x"\nprovider = "ftp"\n', "mirrors[0] (x)", "provider",
     "unknown provider 'ftp' (expected command, rsync or two-stage-rsync)"),
    (CMD + '[[mirrors]]\nprovider = "command"\ncommand = "true"\n', "mirrors[1]", "name",
     "missing"),
    (CMD + CMD, "mirrors[1] (hello)", "name",
     "duplicate job name 'hello' (also defined at mirrors[0])"),
    (CMD.replace('"hello"', '"a/b"'), "mirrors[0] (a/b)", "name", "job name 'a/b' is not allowed"),
    (CMD.replace('"hello"', '".."'), "mirrors[0] (..)", "name", "job name '..' is not allowed"),
    (CMD + 'size_pattern = "Total ("\n', "mirrors[0] (hello)", "size_pattern",
     "invalid regular expression"),
    (CMD + 'size_pattern = "Total size"\n', "mirrors[0] (hello)", "size_pattern", "no group"),
    (CMD + 'fail_on_match = "[a-"\n', "mirrors[0] (hello)", "fail_on_match",
     "invalid regular expression"),
    (CMD + 'interval = "5"\n', "mirrors[0] (hello)", "interval",
     "expected a number (minutes), got string '5'"),
    (CMD + "retry = true\n", "mirrors[0] (hello)", "retry", "expected an integer"),
    (CMD + "use_ipv6 = 1\n", "mirrors[0] (hello)", "use_ipv6", "expected true or false"),
    (CMD + "timeout = 1.5\n", "mirrors[0] (hello)", "timeout", "got float 1.5"),
    (CMD + 'exec_on_success = "echo"\n', "mirrors[0] (hello)", "exec_on_success",
     "expected a list of strings"),
    (CMD + "[mirrors.env]\nA = 1\n", "mirrors[0] (hello)", "env", "expected a table of strings"),
    (CMD + "interval = -1\n", "mirrors[0] (hello)", "interval", "must not be negative"),
    (CMD + "retry = -2\n", "mirrors[0] (hello)", "retry", "must not be negative"),
    (CMD + "timeout = -5\n", "mirrors[0] (hello)", "timeout", "must not be negative"),
    ('[[mirrors]]\nname = "d"\nupstream = "rsync://h/d"\n', "mirrors[0] (d)", "upstream",
     "must end with '/'"),
    ('[[mirrors]]\nname = "d"\nupstream = "rsync://h/d/"\nrsync_override_only = true\n',
     "mirrors[0] (d)", "rsync_override_only", "no rsync_override provided"),
    ('[[mirrors]]\nname = "d"\nprovider = "two-stage-rsync"\nupstream = "rsync://h/d/"\n'
     'stage1_profile = "ubuntu"\n', "mirrors[0] (d)", "stage1_profile", "unknown profile 'ubuntu'"),
    ('[[mirrors]]\nname = "d"\nprovider = "two-stage-rsync"\nupstream = "rsync://h/d/"\n',
     "mirrors[0] (d)", "stage1_profile", "missing"),
    ('[[mirrors]]\nname = "c"\nprovider = "command"\n', "mirrors[0] (c)", "command",
     "empty command"),
    ('[[mirrors]]\nname = "c"\nprovider = "command"\ncommand = "sh -c \'echo"\n',
     "mirrors[0] (c)", "command", "cannot split"),
    (CMD + 'exec_on_failure = ["echo \'unbalanced"]\n', "mirrors[0] (hello)", "exec_on_failure",
     "cannot split"),
    (CMD + 'memory_limit = "lots"\n', "mirrors[0] (hello)", "memory_limit", "invalid size"),
    (CMD + 'log_dir = "/logs/{{.Nmae}}"\n', "mirrors[0] (hello)", "log_dir",
     "unknown field 'Nmae'"),
    (CMD + 'log_dir = "/logs/{{if .Name}}x{{end}}"\n', "mirrors[0] (hello)", "log_dir",
     "unsupported template action"),
    (CMD + 'log_dir = "/logs/{{.Name"\n', "mirrors[0] (hello)", "log_dir", "unclosed"),
    ("[bus]\nprefix = \"Bad.Prefix\"\n" + CMD, "[bus]", "prefix", "not allowed"),
    ('[bus]\nurl = "tls://a:1"\nurls = ["tls://b:1"]\n' + CMD, "[bus]", "urls", "not both"),
    ('[[mirrors]]\nname = "n"\nprovider = "command"\ncommand = "true"\n[[mirrors.mirrors]]\n'
     'name = "c"\nprovider = "gopher"\n', "mirrors[0].mirrors[0] (c)", "provider", "'gopher'"),
]
# fmt: on


@pytest.mark.parametrize(("text", "job", "key", "problem"), BAD)
def test_errors_name_file_job_and_key(
    tmp_path: Path, text: str, job: str, key: str, problem: str
) -> None:
    err = fails(tmp_path, GLOBAL + text)
    assert (err.job, err.key) == (job, key)
    assert problem in err.problem
    assert str(err) == f"{tmp_path / 'worker.toml'}: {job}: key '{key}': {err.problem}"


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    err = fails(tmp_path, GLOBAL + "[[mirrors]]\nname = hello\n")
    assert "invalid TOML" in err.problem
    assert re.search(r"line 7, column \d+", err.problem)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_worker_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[global]\nmirror_dir = "/m"\nlog_dir = "/l"\n', "name", "missing"),
        ('[global]\nname = "w/1"\n', "name", "worker name 'w/1' is not allowed"),
        ('[global]\nname = "w\\t1"\n', "name", "worker name 'w\\t1' is not allowed"),
        ('[global]\nname = "w1"\nconcurrent = -1\n', "concurrent", "must not be negative"),
        ('[global]\nname = "w1"\nexec_on_success = ["\'"]\n', "exec_on_success", "cannot split"),
    ],
)
def test_global_errors(tmp_path: Path, text: str, key: str, problem: str) -> None:
    err = fails(tmp_path, text)
    assert (err.job, err.key) == ("[global]", key)
    assert problem in err.problem


def test_global_must_be_a_table(tmp_path: Path) -> None:
    err = fails(tmp_path, "global = 5\n")
    assert err.job == "[global]" and "expected a table" in err.problem


def test_a_job_needs_a_log_dir_and_a_working_dir(tmp_path: Path) -> None:
    err = fails(tmp_path, '[global]\nname = "w1"\nmirror_dir = "/m"\n' + CMD)
    assert err.key == "log_dir" and "no log directory" in err.problem
    err = fails(tmp_path, '[global]\nname = "w1"\nlog_dir = "/l"\n' + CMD)
    assert err.key == "mirror_dir" and "no working directory" in err.problem
    # A job's own directories are enough.
    cfg = load(tmp_path, '[global]\nname = "w1"\n' + CMD + 'mirror_dir = "/x"\nlog_dir = "/y"\n')
    assert (only(cfg).working_dir, only(cfg).log_dir) == (Path("/x"), Path("/y"))


def test_mirrors_must_be_an_array_of_tables(tmp_path: Path) -> None:
    err = fails(tmp_path, "mirrors = 3\n" + GLOBAL)
    assert err.key == "mirrors" and "expected [[mirrors]] tables" in err.problem
    err = fails(tmp_path, GLOBAL + CMD + "mirrors = [1, 2]\n")
    assert (err.job, err.key) == ("mirrors[0] (hello)", "mirrors")
    assert "expected [[mirrors.mirrors]] tables, got list" in err.problem


# -- inheritance ------------------------------------------------------------------------------

NESTED = """
[[mirrors]]
name = "ipv6s"
use_ipv6 = true
	[[mirrors.mirrors]]
	name = "debians"
	mirror_subdir = "debian"
	provider = "two-stage-rsync"
	stage1_profile = "debian"

		[[mirrors.mirrors.mirrors]]
		name = "debian-security"
		upstream = "rsync://test.host/debian-security/"
		[[mirrors.mirrors.mirrors]]
		name = "ubuntu"
		stage1_profile = "UBUNTU_PROFILE"
		upstream = "rsync://test.host2/ubuntu/"
	[[mirrors.mirrors]]
	name = "debian-cd"
	provider = "rsync"
	upstream = "rsync://test.host3/debian-cd/"
"""


def test_tunasync_nested_example(tmp_path: Path) -> None:
    # tunasync's own test uses stage1_profile = "ubuntu", which it only rejects at run time;
    # we use a valid profile here and check the rejection below.
    cfg = load(
        tmp_path, GLOBAL + "timeout = 86400\n" + NESTED.replace("UBUNTU_PROFILE", "debian-oldstyle")
    )
    assert [m.name for m in cfg.mirrors] == ["debian-security", "ubuntu", "debian-cd"]
    sec, ubuntu, cd = cfg.mirrors
    assert sec.working_dir == Path("/data/mirrors/debian/debian-security")
    assert ubuntu.working_dir == Path("/data/mirrors/debian/ubuntu")
    assert cd.working_dir == Path("/data/mirrors/debian-cd")
    assert [m.log_dir for m in cfg.mirrors] == [
        Path("/var/log/mb/debian-security"),
        Path("/var/log/mb/ubuntu"),
        Path("/var/log/mb/debian-cd"),
    ]
    assert (sec.provider, sec.stage1_profile, sec.use_ipv6) == ("two-stage-rsync", "debian", True)
    assert (ubuntu.provider, ubuntu.stage1_profile, ubuntu.use_ipv6) == (
        "two-stage-rsync",
        "debian-oldstyle",
        True,
    )
    assert (cd.provider, cd.use_ipv6, cd.mirror_subdir) == ("rsync", True, "")
    assert cd.timeout == timedelta(seconds=86400)
    assert cd.origin.endswith("worker.toml: mirrors[0].mirrors[1] (debian-cd)")


def test_tunasync_nested_example_as_is_fails_at_load(tmp_path: Path) -> None:
    err = fails(tmp_path, GLOBAL + NESTED.replace("UBUNTU_PROFILE", "ubuntu"))
    assert (err.job, err.key) == ("mirrors[0].mirrors[0].mirrors[1] (ubuntu)", "stage1_profile")


def test_siblings_do_not_share_env(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        GLOBAL
        + """
[[mirrors]]
provider = "command"
command = "true"
  [mirrors.env]
  BASE = "parent"
  [[mirrors.mirrors]]
  name = "first"
  [mirrors.mirrors.env]
  ONLY_FIRST = "1"
  BASE = "first"
  [[mirrors.mirrors]]
  name = "second"
""",
    )
    first, second = cfg.mirrors
    assert dict(first.env) == {"BASE": "first", "ONLY_FIRST": "1"}
    assert dict(second.env) == {"BASE": "parent"}
    assert first.env is not second.env
    with pytest.raises(TypeError):
        first.env["X"] = "y"  # type: ignore[index]  # read-only: the config is frozen


def test_child_can_reset_inherited_values(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        GLOBAL
        + "interval = 60\n"
        + """
[[mirrors]]
provider = "rsync"
upstream = "rsync://h/x/"
use_ipv6 = true
interval = 5
memory_limit = "1G"
rsync_options = ["--delete-excluded"]
mirror_subdir = "sub"
  [[mirrors.mirrors]]
  name = "keeps"
  [[mirrors.mirrors]]
  name = "resets"
  use_ipv6 = false
  interval = 0
  memory_limit = ""
  rsync_options = []
  mirror_subdir = ""
""",
    )
    keeps, resets = cfg.mirrors
    assert (keeps.use_ipv6, keeps.interval, keeps.memory_limit) == (
        True,
        timedelta(minutes=5),
        1 << 30,
    )
    assert keeps.rsync_options == ("--delete-excluded",)
    assert keeps.working_dir == Path("/data/mirrors/sub/keeps")
    assert (resets.use_ipv6, resets.memory_limit, resets.rsync_options) == (False, None, ())
    assert resets.interval == timedelta(minutes=60)  # 0 ⇒ the global interval, as in tunasync
    assert resets.working_dir == Path("/data/mirrors/resets")


def test_name_is_not_inherited(tmp_path: Path) -> None:
    text = GLOBAL + '[[mirrors]]\nname = "parent"\nprovider = "command"\ncommand = "true"\n'
    err = fails(tmp_path, text + "  [[mirrors.mirrors]]\n  interval = 3\n")
    assert (err.job, err.key) == ("mirrors[0].mirrors[0]", "name")


# -- include ----------------------------------------------------------------------------------


def test_include_glob_lexical_order_relative_to_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc"
    write(conf, '[[mirrors]]\nname = "b1"\nupstream = "rsync://h/b1/"\n', "mirrors/b.conf")
    write(
        conf,
        '[[mirrors]]\nname = "a1"\nupstream = "rsync://h/a1/"\n'
        '[[mirrors]]\nname = "a2"\nupstream = "rsync://h/a2/"\n',
        "mirrors/a.conf",
    )
    write(conf, '[[mirrors]]\nname = "zz"\nupstream = "rsync://h/zz/"\n', "mirrors/skip.txt")
    path = write(conf, GLOBAL + CMD + '[include]\ninclude_mirrors = "mirrors/*.conf"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_worker_config(path)
    assert [m.name for m in cfg.mirrors] == ["hello", "a1", "a2", "b1"]
    assert cfg.include.files == (conf / "mirrors/a.conf", conf / "mirrors/b.conf")
    assert cfg.mirror("a2").origin == f"{conf / 'mirrors/a.conf'}: mirrors[1] (a2)"


def test_include_errors_and_warnings(tmp_path: Path) -> None:
    inc = '[include]\ninclude_mirrors = "m/*.conf"\n'
    write(
        tmp_path,
        '[global]\nname = "x"\n[[mirrors]]\nname = "hello"\nupstream = "rsync://h/h/"\n',
        "m/a.conf",
    )
    err = fails(tmp_path, GLOBAL + CMD + inc)
    assert err.job == "mirrors[0] (hello)" and err.file == str(tmp_path / "m/a.conf")
    assert f"(also defined at {tmp_path / 'worker.toml'}: mirrors[0])" in err.problem

    write(
        tmp_path,
        '[[mirrors]]\nname = "other"\nupstream = "rsync://h/o/"\nbogus = 1\n[global]\nname = "x"\n',
        "m/a.conf",
    )
    cfg = load(tmp_path, GLOBAL + CMD + inc)
    assert [m.name for m in cfg.mirrors] == ["hello", "other"]
    a = tmp_path / "m/a.conf"
    known = ", ".join(sorted([*MIRROR_KEYS, "mirrors"]))
    assert f"{a}: mirrors[0] (other): key 'bogus': unknown key, ignored (known: {known})" in (
        cfg.warnings
    )
    assert any(w.startswith(f"{a}: 'global' ignored") for w in cfg.warnings)

    write(tmp_path, "[[mirrors]\n", "m/a.conf")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, GLOBAL + CMD + inc)
    assert info.value.file == str(a) and "invalid TOML" in info.value.problem

    cfg = load(tmp_path, GLOBAL + CMD + '[include]\ninclude_mirrors = "none/*.conf"\n')
    assert any("matches no file" in w and "include_mirrors" in w for w in cfg.warnings)


# -- derived values ---------------------------------------------------------------------------


def test_success_exit_codes_merged_and_deduplicated(tmp_path: Path) -> None:
    codes = GLOBAL + "dangerous_global_success_exit_codes = [10, 20, 10]\n"
    codes += "dangerous_global_rsync_success_exit_codes = [23, 24, 23]\n"
    mirror = "success_exit_codes = [20, 30, 20]\nrsync_success_exit_codes = [24, 25, 24]\n"
    cfg = load(
        tmp_path,
        codes + '[[mirrors]]\nname = "r"\nupstream = "rsync://h/r/"\n' + mirror + CMD + mirror,
    )
    rsync, command = cfg.mirrors
    assert rsync.success_exit_codes == (10, 20, 30, 23, 24, 25)
    assert command.success_exit_codes == (10, 20, 30)
    assert cfg.warnings == (
        f"{tmp_path / 'worker.toml'}: mirrors[1] (hello): key 'rsync_success_exit_codes': "
        "ignored for the command provider",
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256M", 256 << 20), ("256MiB", 256 << 20), ("256mb", 256 << 20), ("128m", 128 << 20),
        ("1.5G", 3 << 29), ("512k", 512 << 10), ("2 g", 2 << 30), ("1T", 1 << 40),
        ("100", 100), ("100b", 100), ("", None), ("0", None),
    ],
)  # fmt: skip
def test_memory_limit_sizes(tmp_path: Path, text: str, size: int | None) -> None:
    assert only(load(tmp_path, GLOBAL + CMD + f'memory_limit = "{text}"\n')).memory_limit == size


def test_memory_limit_must_be_a_string(tmp_path: Path) -> None:
    assert fails(tmp_path, GLOBAL + CMD + "memory_limit = 256\n").key == "memory_limit"


def test_log_dir_template(tmp_path: Path) -> None:
    text = GLOBAL.replace(
        "/var/log/mb/{{.Name}}", "logs/{{ .MirrorSubDir }}/{{.name}}-{{.Provider}}"
    )
    cfg = load(
        tmp_path,
        text
        + "interval = 7\n"
        + CMD
        + 'mirror_subdir = "a&b"\n'
        + """
[[mirrors]]
name = "own"
provider = "command"
command = "true"
log_dir = "/l/{{.Name}}/{{.Interval}}m/{{.UseIPv6}}/{{.MemoryLimit}}"
memory_limit = "1k"
""",
    )
    hello, own = cfg.mirrors
    assert hello.log_dir == tmp_path / "logs/a&b/hello-command"  # not "a&amp;b"
    assert own.log_dir == Path("/l/own/7m/false/1024")
    assert cfg.log_dir == "logs/{{ .MirrorSubDir }}/{{.name}}-{{.Provider}}"


def test_relative_paths_resolve_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    text = """
[global]
name = "w1"
mirror_dir = "data"
log_dir = "../logs/{{.Name}}"
[bus]
url = "tls://127.0.0.1:4222"
ca_cert = "pki/ca.crt"
cert = "/etc/pki/w1.crt"
key = "pki/w1.key"
prefix = "mb-test"
[btrfs_snapshot]
enable = true
snapshot_path = "snaps"
[[mirrors]]
name = "r"
upstream = "rsync://h/r/"
exclude_file = "excl/r.txt"
password = "s3cret"
[[mirrors]]
name = "s"
upstream = "rsync://h/s/"
snapshot_path = "/srv/s"
"""
    conf = tmp_path / "conf"
    cfg = load_worker_config(write(conf, text))
    r, s = cfg.mirrors
    assert cfg.mirror_dir == conf / "data"
    assert r.working_dir == conf / "data/r"
    assert r.log_dir == tmp_path / "logs/r"
    assert r.exclude_file == conf / "excl/r.txt"
    assert (r.snapshot_path, s.snapshot_path) == (conf / "snaps/r", Path("/srv/s"))
    assert cfg.bus.urls == ("tls://127.0.0.1:4222",)
    assert (cfg.bus.ca_cert, cfg.bus.cert, cfg.bus.key) == (
        conf / "pki/ca.crt",
        Path("/etc/pki/w1.crt"),
        conf / "pki/w1.key",
    )
    assert cfg.bus.prefix == "mb-test"
    assert r.password == "s3cret" and "s3cret" not in repr(r)


def test_role_exec_hooks_and_rsync_keys(tmp_path: Path) -> None:
    text = (
        GLOBAL
        + """
exec_on_success = ["echo global-ok"]
exec_on_failure = ["echo global-fail"]
rsync_options = ["--global"]
[[mirrors]]
name = "r"
upstream = "rsync://h/r/"
command = "/opt/rsync"
role = "slave"
exec_on_success = ["bash -c 'echo $TUNASYNC_JOB_EXIT_STATUS'"]
exec_on_success_extra = ["echo extra"]
rsync_override = ["--bar", "baz"]
rsync_override_only = true
use_ipv4 = true
rsync_timeout = 30
docker_image = "img"
docker_volumes = ["/a:/a"]
[[mirrors]]
name = "t"
upstream = "rsync://h/t/"
role = "primary"
rsync_no_timeout = true
"""
    )
    cfg = load(tmp_path, text)
    r, t = cfg.mirrors
    assert cfg.rsync_options == ("--global",)
    assert (r.role, r.is_master, r.command) == ("slave", False, ("/opt/rsync",))
    assert r.exec_on_success == (("bash", "-c", "echo $TUNASYNC_JOB_EXIT_STATUS"),)
    assert r.exec_on_success_extra == (("echo", "extra"),)
    assert r.exec_on_failure == (("echo", "global-fail"),)
    assert r.rsync_override == ("--bar", "baz") and r.rsync_override_only
    assert (r.use_ipv4, r.rsync_timeout, r.docker_image, r.docker_volumes) == (
        True,
        30,
        "img",
        ("/a:/a",),
    )
    assert (t.role, t.is_master, t.rsync_no_timeout) == ("master", True, True)
    assert t.exec_on_success == (("echo", "global-ok"),)
    assert any("key 'role': invalid role 'primary'" in w for w in cfg.warnings)


def test_mirror_subdir_joins_like_go(tmp_path: Path) -> None:
    assert only(load(tmp_path, GLOBAL + CMD + 'mirror_subdir = "/x/"\n')).working_dir == Path(
        "/data/mirrors/x/hello"
    )


def test_same_file_loads_equal(tmp_path: Path) -> None:
    path = write(
        tmp_path, GLOBAL + CMD + 'size_pattern = "size: (\\\\d+)"\n[mirrors.env]\nA = "1"\n'
    )
    assert load_worker_config(path) == load_worker_config(path)


# -- warnings ---------------------------------------------------------------------------------


def test_manager_server_and_unknown_keys_are_warnings(tmp_path: Path) -> None:
    text = GLOBAL + 'colour = "blue"\n[manager]\napi_base = "http://localhost:12345"\n'
    text += '[server]\nlisten_port = 6000\n[bus]\nurll = "x"\n[frobnicate]\nx = 1\n'
    cfg = load(tmp_path, text + CMD + "intervall = 5\n")
    f = tmp_path / "worker.toml"
    assert cfg.warnings == (
        f"{f}: [manager] is not used by mirrorbus (the bus replaces it)",
        f"{f}: [server] is not used by mirrorbus (workers take commands from the bus)",
        f"{f}: key 'frobnicate': unknown section or key, ignored (known: btrfs_snapshot, bus, "
        "cgroup, docker, global, include, mirrors, upstream_limits, zfs)",
        f"{f}: [global]: key 'colour': unknown key, ignored "
        f"(known: {', '.join(sorted(GLOBAL_KEYS))})",
        f"{f}: [bus]: key 'urll': unknown key, ignored (did you mean 'url'?)",
        f"{f}: mirrors[0] (hello): key 'intervall': unknown key, ignored "
        "(did you mean 'interval'?)",
    )
    assert only(cfg).interval == timedelta(0)


# -- the example and the report ---------------------------------------------------------------


@pytest.mark.e2e
def test_example_config_loads_and_its_commands_run_offline(tmp_path: Path) -> None:
    cfg = load_worker_config(EXAMPLE)
    assert cfg.warnings == ()
    assert [m.name for m in cfg.mirrors] == ["hello", "slow", "docs-en", "docs-fr"]
    assert all(m.provider == "command" for m in cfg.mirrors)
    assert all(m.interval <= timedelta(minutes=5) for m in cfg.mirrors)
    base = EXAMPLE.parent
    assert cfg.mirror("docs-fr").working_dir == base / "state/mirrors/docs/docs-fr"
    assert cfg.mirror("hello").log_dir == base / "state/logs/hello"
    assert dict(cfg.mirror("docs-en").env) == {"GREETING": "hello from the parent"}
    for name in ("hello", "docs-fr"):  # "slow" sleeps; it is the same kind of script
        m = cfg.mirror(name)
        work = tmp_path / name
        work.mkdir()
        env = {"PATH": "/usr/bin:/bin", "TUNASYNC_WORKING_DIR": str(work),
               "TUNASYNC_UPSTREAM_URL": m.upstream, **m.env}  # fmt: skip
        out = subprocess.run(m.command, env=env, capture_output=True, text=True, check=True)
        assert m.size_pattern is not None
        sizes = m.size_pattern.findall(out.stdout)
        assert sizes and sizes[-1] in ("12K", "4.0K")
        assert any(work.iterdir())
    assert (tmp_path / "docs-fr/index.txt").read_text() == "bonjour\n"


def test_check_report_lists_every_job(tmp_path: Path) -> None:
    cfg = load(tmp_path, GLOBAL + "interval = 90\n" + CMD + "[manager]\n")
    report = check_report(cfg)
    assert report.splitlines()[0] == (
        f"worker 'w1' ({tmp_path / 'worker.toml'}): 1 job, at most 10 at a time"
    )
    assert "hello  [command]  every 1h30m, 2 attempts, timeout none" in report
    assert "working dir:   /data/mirrors/hello" in report
    assert "log dir:       /var/log/mb/hello" in report
    assert "command:       /bin/true" in report
    assert "1 warning:" in report and "[manager] is not used" in report
    example = check_report(load_worker_config(EXAMPLE))
    for name in ("hello", "slow", "docs-en", "docs-fr"):
        assert f"\n{name}  [command]" in example


def test_public_names() -> None:
    from mirrorbus.config import worker as config

    assert sorted(config.__all__) == sorted(
        [
            "DEFAULT_CONCURRENT", "DEFAULT_RETRY", "BtrfsSnapshotConfig",
            "CgroupConfig", "DockerConfig", "IncludeConfig", "MirrorConfig", "WorkerConfig",
            "ZfsConfig", "check_report", "load_worker_config",
        ]
    )  # fmt: skip
    assert all(hasattr(config, name) for name in config.__all__)
