"""``mirrorbus worker -c FILE --check``: what a config would run, for a person to read.

The point of a check is to catch a surprise before the worker starts: a job landing in the
wrong directory, a log path that still contains a placeholder, an interval in hours that
was meant in minutes.  So the report shows the *resolved* values (absolute paths, merged
defaults, the argv as it will be executed), one block per job, and the warnings last.

    worker 'w1' (/etc/mirrorbus/worker.toml): 2 jobs, at most 10 at a time
      bus: tls://nats.example.org:4222, prefix mirrorbus
      ...
"""

from __future__ import annotations

import shlex
from datetime import timedelta

from mirrorbus.config.worker_model import MirrorConfig, WorkerConfig


def check_report(cfg: WorkerConfig) -> str:
    """A multi-line human summary of ``cfg``: worker, bus, every job, then warnings."""
    jobs = len(cfg.mirrors)
    lines = [
        f"worker {cfg.name!r} ({cfg.path}): {jobs} job{'' if jobs == 1 else 's'}, "
        f"at most {cfg.concurrent} at a time",
        f"  defaults: {_every(cfg.interval)}, {_attempts(cfg.retry)}, "
        f"timeout {_duration(cfg.timeout)}",
        "  bus: " + _bus(cfg),
    ]
    if cfg.include.include_mirrors:
        names = ", ".join(str(f) for f in cfg.include.files) or "no file"
        lines.append(f"  include {cfg.include.include_mirrors!r}: {names}")
    hooks = [name for name, on in _hooks(cfg) if on]
    if hooks:
        lines.append("  enabled: " + ", ".join(hooks))
    for mirror in cfg.mirrors:
        lines.append("")
        lines.extend(_job(mirror))
    if cfg.warnings:
        lines.append("")
        lines.append(f"{len(cfg.warnings)} warning{'' if len(cfg.warnings) == 1 else 's'}:")
        lines.extend(f"  - {w}" for w in cfg.warnings)
    return "\n".join(lines) + "\n"


def _bus(cfg: WorkerConfig) -> str:
    if not cfg.bus.urls:
        return f"not set in the file (prefix {cfg.bus.prefix})"
    text = f"{', '.join(cfg.bus.urls)}, prefix {cfg.bus.prefix}"
    if cfg.bus.cert is not None:
        text += f", cert {cfg.bus.cert}"
    return text


def _hooks(cfg: WorkerConfig) -> list[tuple[str, bool]]:
    return [
        ("cgroup", cfg.cgroup.enable),
        ("docker", cfg.docker.enable),
        ("zfs", cfg.zfs.enable),
        ("btrfs snapshots", cfg.btrfs_snapshot.enable),
    ]


def _job(m: MirrorConfig) -> list[str]:
    head = (
        f"{m.name}  [{m.provider}]  {_every(m.interval)}, {_attempts(m.retry)}, "
        f"timeout {_duration(m.timeout)}"
    )
    if not m.is_master:
        head += ", slave"
    rows: list[tuple[str, str]] = [
        ("working dir", str(m.working_dir)),
        ("log dir", str(m.log_dir)),
    ]
    if m.provider == "command":
        rows.append(("command", shlex.join(m.command)))
        if m.upstream:
            rows.append(("upstream", m.upstream))
    else:
        rows.append(("upstream", m.upstream))
        if m.command != ("rsync",):
            rows.append(("rsync", m.command[0]))
        if m.stage1_profile and m.provider == "two-stage-rsync":
            rows.append(("stage 1", m.stage1_profile))
    if m.size_pattern is not None:
        rows.append(("size pattern", m.size_pattern.pattern))
    if m.fail_on_match is not None:
        rows.append(("fail on match", m.fail_on_match.pattern))
    if m.success_exit_codes:
        rows.append(("exit ok", " ".join(str(c) for c in m.success_exit_codes)))
    if m.env:
        rows.append(("env", " ".join(f"{k}={shlex.quote(v)}" for k, v in m.env.items())))
    if m.memory_limit is not None:
        rows.append(("memory", f"{m.memory_limit} bytes"))
    if m.docker_image:
        rows.append(("docker image", m.docker_image))
    for label, cmds in (
        ("on success", m.exec_on_success + m.exec_on_success_extra),
        ("on failure", m.exec_on_failure + m.exec_on_failure_extra),
    ):
        rows.extend((label, shlex.join(argv)) for argv in cmds)
    return [head] + [f"    {label + ':':<14} {value}" for label, value in rows]


def _every(interval: timedelta) -> str:
    if not interval:
        return "re-run right after each run"
    return f"every {_duration(interval)}"


def _attempts(retry: int) -> str:
    return f"{retry} attempt{'' if retry == 1 else 's'}"


def _duration(d: timedelta | None) -> str:
    """``1h30m``-style text; ``none`` for no timeout."""
    if d is None:
        return "none"
    total = int(d.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if v]
    return "".join(parts) or "0s"
