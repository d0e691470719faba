"""From a tree of ``[[mirrors]]`` tables to the jobs the worker runs.

Two steps, both pure:

1. :func:`flatten` walks nested ``[[mirrors.mirrors]]`` tables (any depth).  Inner nodes are
   templates, leaves become jobs.  A child starts from a copy of its merged parent and every
   key it sets wins, **even a zero value** (``use_ipv6 = false``, ``interval = 0``,
   ``memory_limit = ""``).  tunasync (mergo ``WithOverride``) ignores zero values, so a
   child could not switch an inherited option off; we fix that.  ``env`` tables merge
   key by key and every node gets its own copy: in tunasync all descendants share one Go
   map, so one sibling's env leaked into the next.  ``name`` is never inherited: a leaf
   without a name is an error, not a second job called like its parent.
2. :func:`build_mirror` resolves one leaf against the ``[global]`` defaults into a
   :class:`~mirrorbus.config.worker_model.MirrorConfig`, checking at load time what
   tunasync only found when the provider started (a panic) or ran (``stage1_profile``).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

from mirrorbus.config.schema import (
    MIRROR_KEYS,
    Checked,
    Kind,
    Where,
    describe,
    parse_memory_limit,
    read_table,
    resolve,
)
from mirrorbus.config.worker_model import (
    DEFAULT_KEEP_LOGS,
    DEFAULT_RSYNC_TIMEOUT,
    PROVIDERS,
    STAGE1_PROFILES,
    Argv,
    MirrorConfig,
    Provider,
    Role,
)
from mirrorbus.errors import InvalidName
from mirrorbus.events.subjects import check_name


@dataclass(frozen=True, slots=True)
class Leaf:
    """A job before resolution: its merged, checked keys and where it was defined."""

    values: Mapping[str, object]
    where: Where


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a mirror falls back to: the ``[global]`` (and ``[btrfs_snapshot]``) values."""

    base_dir: Path
    mirror_dir: Path | None
    log_dir: str
    interval: float
    retry: int
    timeout: int
    exec_on_success: tuple[Argv, ...] = ()
    exec_on_failure: tuple[Argv, ...] = ()
    success_exit_codes: tuple[int, ...] = ()
    rsync_success_exit_codes: tuple[int, ...] = ()
    snapshot_path: Path | None = None
    jitter: float = 0.0
    retry_backoff: float = 0.0
    keep_logs: int = DEFAULT_KEEP_LOGS


def flatten(
    nodes: object, file: Path | str, warnings: list[str], *, prefix: str = "mirrors"
) -> list[Leaf]:
    """The leaves of a ``[[mirrors]]`` list, in file order, merged with their ancestors."""
    return _walk(nodes, file, prefix, {}, warnings, Where(file, None))


def _walk(
    nodes: object,
    file: Path | str,
    prefix: str,
    parent: Mapping[str, object],
    warnings: list[str],
    owner: Where,
) -> list[Leaf]:
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        tables = re.sub(r"\[\d+\]", "", prefix)  # mirrors[0].mirrors -> mirrors.mirrors
        raise owner.error("mirrors", f"expected [[{tables}]] tables, got {describe(nodes)}")
    leaves: list[Leaf] = []
    for i, node in enumerate(nodes):
        label = f"{prefix}[{i}]"
        name = node.get("name")
        # A name that cannot be one (a newline in it) is shown escaped: errors are one line.
        shown = name if isinstance(name, str) and name.isprintable() else repr(name)
        where = Where(file, f"{label} ({shown})" if isinstance(name, str) and name else label)
        own = read_table(node, MIRROR_KEYS, where, warnings, skip=frozenset({"mirrors"}))
        _check_node(own, where, warnings)
        merged = {k: v for k, v in parent.items() if k != "name"}
        for key, value in own.items():
            if key == "env":
                merged["env"] = {**Checked(parent).env(), **Checked(own).env()}
            else:
                merged[key] = value
        merged["env"] = Checked(merged).env()  # a private copy for each node
        children = node.get("mirrors")
        if children is None or children == []:
            leaves.append(Leaf(merged, where))
        else:
            leaves.extend(_walk(children, file, f"{label}.mirrors", merged, warnings, where))
    return leaves


def _check_node(own: Mapping[str, object], where: Where, warnings: list[str]) -> None:
    """Checks of single values, reported where the value is written (not at every leaf)."""
    c = Checked(own)
    if "provider" in own and c.text("provider") not in PROVIDERS:
        raise where.error(
            "provider",
            f"unknown provider {c.text('provider')!r} (expected command, rsync or two-stage-rsync)",
        )
    if "memory_limit" in own:
        parse_memory_limit(c.text("memory_limit"), where)
    if c.text("role") not in ("", "master", "slave"):
        warnings.append(
            where.warning(
                "role", f"invalid role {c.text('role')!r} (expected master or slave); using master"
            )
        )


def build_mirror(leaf: Leaf, d: Defaults, warnings: list[str]) -> MirrorConfig:
    """Resolve one leaf into the job the runtime runs; raise ConfigError if it cannot run."""
    c, where = Checked(leaf.values), leaf.where
    name = c.text("name")
    if not name:
        raise where.error("name", "missing: every job needs a name")
    try:
        check_name(name, "job name")
    except InvalidName as exc:
        raise where.error("name", str(exc)) from None
    provider = _provider(c)
    upstream = c.text("upstream")
    rsync_like = provider != "command"
    interval = c.number("interval") or d.interval
    retry = c.integer("retry") or d.retry
    timeout = c.integer("timeout") or d.timeout

    if provider == "command":
        command = split_command(c.text("command"), where, "command")
    else:
        command = (c.text("command") or "rsync",)
        if not upstream.endswith("/"):
            raise where.error("upstream", f"an rsync upstream must end with '/', got {upstream!r}")
    if provider == "rsync" and c.flag("rsync_override_only") and not c.texts("rsync_override"):
        raise where.error(
            "rsync_override_only", "rsync_override_only is set but no rsync_override provided"
        )
    if provider == "two-stage-rsync":
        _check_two_stage(c, where, warnings)

    codes = d.success_exit_codes + c.integers("success_exit_codes")
    if rsync_like:
        codes += d.rsync_success_exit_codes + c.integers("rsync_success_exit_codes")
    elif c.integers("rsync_success_exit_codes"):
        warnings.append(
            where.warning("rsync_success_exit_codes", "ignored for the command provider")
        )

    role: Role = "slave" if c.text("role") == "slave" else "master"
    resolved = {**leaf.values, "provider": provider, "interval": interval, "retry": retry}
    resolved["timeout"] = timeout
    log_template = c.text("log_dir") or d.log_dir
    if not log_template:
        raise where.error(
            "log_dir",
            'no log directory: set [global] log_dir (e.g. "/var/log/mirrorbus/{{.Name}}")',
        )
    log_dir = resolve(d.base_dir, render_log_dir(log_template, resolved, where))

    return MirrorConfig(
        name=name,
        provider=provider,
        upstream=upstream,
        command=command,
        interval=timedelta(minutes=interval),
        retry=retry,
        timeout=timedelta(seconds=timeout) if timeout > 0 else None,
        working_dir=_working_dir(c, d, where),
        log_dir=log_dir,
        env=MappingProxyType(c.env()),
        size_pattern=_regex(c, "size_pattern", where, need_group=True),
        fail_on_match=_regex(c, "fail_on_match", where),
        success_exit_codes=tuple(dict.fromkeys(codes)),
        role=role,
        is_master=role == "master",
        mirror_subdir=c.text("mirror_subdir"),
        exec_on_success=_exec_list(c, "exec_on_success", where) or d.exec_on_success,
        exec_on_failure=_exec_list(c, "exec_on_failure", where) or d.exec_on_failure,
        exec_on_success_extra=_exec_list(c, "exec_on_success_extra", where),
        exec_on_failure_extra=_exec_list(c, "exec_on_failure_extra", where),
        use_ipv4=c.flag("use_ipv4"),
        use_ipv6=c.flag("use_ipv6"),
        exclude_file=resolve(d.base_dir, c.text("exclude_file"))
        if c.text("exclude_file")
        else None,
        username=c.text("username"),
        password=c.text("password"),
        rsync_no_timeout=c.flag("rsync_no_timeout"),
        rsync_timeout=c.integer("rsync_timeout") or DEFAULT_RSYNC_TIMEOUT,
        rsync_options=c.texts("rsync_options"),
        rsync_override=c.texts("rsync_override"),
        rsync_override_only=c.flag("rsync_override_only"),
        stage1_profile=c.text("stage1_profile"),
        memory_limit=parse_memory_limit(c.text("memory_limit"), where),
        docker_image=c.text("docker_image"),
        docker_volumes=c.texts("docker_volumes"),
        docker_options=c.texts("docker_options"),
        snapshot_path=_snapshot_path(c, d, name),
        jitter=timedelta(minutes=c.number("jitter") if "jitter" in c.values else d.jitter),
        retry_backoff=timedelta(
            seconds=c.number("retry_backoff") if "retry_backoff" in c.values else d.retry_backoff
        ),
        upstream_host=upstream_host(upstream),
        keep_logs=(c.integer("keep_logs") if "keep_logs" in c.values else d.keep_logs) or 1,
        desc=c.text("desc"),
        help=c.text("help"),
        origin=f"{where.file}: {where.job}",
    )


def _provider(c: Checked) -> Provider:
    text = c.text("provider", "rsync")  # omitted ⇒ rsync, the Go enum's zero value
    for p in PROVIDERS:
        if p == text:
            return p
    raise AssertionError(text)  # _check_node refused it already


def _check_two_stage(c: Checked, where: Where, warnings: list[str]) -> None:
    profile = c.text("stage1_profile")
    if profile not in STAGE1_PROFILES:
        got = f"unknown profile {profile!r}" if profile else "missing"
        raise where.error("stage1_profile", f"{got} (expected debian or debian-oldstyle)")
    for key in ("rsync_override", "rsync_override_only"):
        if key in c.values:
            warnings.append(where.warning(key, "not used by the two-stage-rsync provider"))


def _working_dir(c: Checked, d: Defaults, where: Where) -> Path:
    if c.text("mirror_dir"):
        return resolve(d.base_dir, c.text("mirror_dir"))
    if d.mirror_dir is None:
        raise where.error(
            "mirror_dir", "no working directory: set [global] mirror_dir or this job's mirror_dir"
        )
    # Go's filepath.Join: a leading "/" in mirror_subdir does not restart the path.
    parts = [p for p in (c.text("mirror_subdir").lstrip("/"), c.text("name")) if p]
    return Path(os.path.normpath(d.mirror_dir.joinpath(*parts)))


def _snapshot_path(c: Checked, d: Defaults, name: str) -> Path | None:
    if c.text("snapshot_path"):
        return resolve(d.base_dir, c.text("snapshot_path"))
    return d.snapshot_path / name if d.snapshot_path is not None else None


def split_command(text: str, where: Where, key: str) -> Argv:
    """argv of a command line, split like tunasync (POSIX shlex: quotes, no shell)."""
    try:
        argv = tuple(shlex.split(text, posix=True))
    except ValueError as exc:
        raise where.error(key, f"cannot split command {text!r}: {exc}") from None
    if not argv:
        raise where.error(key, "empty command")
    return argv


def _exec_list(c: Checked, key: str, where: Where) -> tuple[Argv, ...]:
    return tuple(split_command(cmd, where, key) for cmd in c.texts(key))


def _regex(
    c: Checked, key: str, where: Where, *, need_group: bool = False
) -> re.Pattern[str] | None:
    text = c.text(key)
    if not text:
        return None
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise where.error(key, f"invalid regular expression {text!r}: {exc}") from None
    if need_group and pattern.groups < 1:
        raise where.error(key, f"{text!r} has no group: group 1 of the last match is the size")
    return pattern


# -- log_dir template --------------------------------------------------------------------------

_GO_FIELDS = {
    "Name": "name", "Provider": "provider", "Upstream": "upstream", "Interval": "interval",
    "Retry": "retry", "Timeout": "timeout", "MirrorDir": "mirror_dir",
    "MirrorSubDir": "mirror_subdir", "LogDir": "log_dir", "Env": "env", "Role": "role",
    "ExecOnSuccess": "exec_on_success", "ExecOnFailure": "exec_on_failure",
    "ExecOnSuccessExtra": "exec_on_success_extra", "ExecOnFailureExtra": "exec_on_failure_extra",
    "SuccessExitCodes": "success_exit_codes", "RsyncSuccessExitCodes": "rsync_success_exit_codes",
    "Command": "command", "FailOnMatch": "fail_on_match", "SizePattern": "size_pattern",
    "UseIPv6": "use_ipv6", "UseIPv4": "use_ipv4", "ExcludeFile": "exclude_file",
    "Username": "username", "Password": "password", "RsyncNoTimeo": "rsync_no_timeout",
    "RsyncTimeout": "rsync_timeout", "RsyncOptions": "rsync_options",
    "RsyncOverride": "rsync_override", "RsyncOverrideOnly": "rsync_override_only",
    "Stage1Profile": "stage1_profile", "MemoryLimit": "memory_limit",
    "DockerImage": "docker_image", "DockerVolumes": "docker_volumes",
    "DockerOptions": "docker_options", "SnapshotPath": "snapshot_path",
}  # fmt: skip
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD = re.compile(r"\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*")


def render_log_dir(template: str, values: Mapping[str, object], where: Where) -> str:
    """Render ``{{.Field}}`` placeholders of a ``log_dir`` as plain text.

    Fields are tunasync's Go names (``{{.Name}}``, ``{{.MirrorSubDir}}``, ...) or the TOML
    keys (``{{.name}}``); ``Interval``/``Retry``/``Timeout`` are the resolved values as in
    tunasync, ``Provider`` renders as its name.  No HTML escaping (tunasync used
    ``html/template``, turning ``&`` into ``&amp;`` in a path).  Other template syntax is
    refused rather than half-supported.

    >>> render_log_dir("/var/log/{{.Name}}", {"name": "a&b"}, Where("w.toml", None))
    '/var/log/a&b'
    """

    def field(match: re.Match[str]) -> str:
        spec = _FIELD.fullmatch(match.group(1))
        if spec is None:
            raise where.error(
                "log_dir", f"unsupported template action {match.group(0)!r} (only {{{{.Field}}}})"
            )
        key = _GO_FIELDS.get(spec.group(1), spec.group(1))
        kind = MIRROR_KEYS.get(key)
        if kind is None or kind is Kind.ENV:
            raise where.error("log_dir", f"unknown field {spec.group(1)!r} in {template!r}")
        value = values.get(key, _ZERO[kind])
        if key == "memory_limit":
            value = parse_memory_limit(str(value), where) or 0
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return "[" + " ".join(str(v) for v in value) + "]"
        return str(value)

    rendered = _ACTION.sub(field, template)
    if "{{" in _ACTION.sub("", template):
        raise where.error("log_dir", f"unclosed '{{{{' in {template!r}")
    return rendered


_ZERO: Mapping[Kind, object] = {
    Kind.STR: "", Kind.INT: 0, Kind.NUMBER: 0, Kind.BOOL: False, Kind.STRS: (), Kind.INTS: (),
}  # fmt: skip


_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)", re.IGNORECASE)
_RSYNC_HOST = re.compile(r"^(?:[^@/:]*@)?([^:/]+)::?")


def upstream_host(upstream: str) -> str:
    """The host an upstream pulls from: ``rsync://h/m/``, ``https://h/``, ``h::m/`` (rsync
    daemon) and ``user@h:path`` (ssh) all give ``h``; "" for a local path."""
    match = _URL_HOST.match(upstream) or _RSYNC_HOST.match(upstream)
    return match.group(1).strip("[]").lower() if match else ""
