"""``mirrorbus ctl`` (also ``mirrorbusctl``): tunasynctl's verbs over the bus.

Human tables by default, ``--json`` for scripts (``list --all --json`` prints tunasync's
``GET /jobs`` items, ``list -w W --json`` its ``MirrorStatus`` items).  Exit status 0 on
success, 1 when a command is rejected, a target is unknown or nobody answers, 2 for a
configuration problem; errors are one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import typer

from mirrorbus.cli.common import one_line_errors, run_async
from mirrorbus.cli.ctl_position import recall, remember
from mirrorbus.cli.gotemplate import MIRROR_FIELDS, WEB_FIELDS, GoTemplate
from mirrorbus.config.ctl import BusFlags, ctl_settings
from mirrorbus.errors import ConfigError
from mirrorbus.events import STATUSES, JobState, Verb
from projections.tunasync import mirror_status, web_mirror_status

if TYPE_CHECKING:
    # Imported where a command connects, not by `mirrorbus ctl --help`.
    from mirrorbus.control import Control
    from mirrorbus.manager.api import PingInfo
    from projections.rows import WorkerRow

T = TypeVar("T")

app = typer.Typer(
    help="Control and inspect jobs (tunasynctl's verbs).\n\n"
    "Examples:\n\n"
    "  mirrorbus ctl --state-dir ./mirrorbus-state list --all\n\n"
    "  mirrorbus ctl start -w worker1 debian --force",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich costs an import on every --help
)


@dataclass(frozen=True, slots=True)
class _Options:
    config: Path | None
    flags: BusFlags
    timeout: float = 15.0
    ttl: float = 60.0
    min_position: int | None = None
    replica: str | None = None


@app.callback()
def ctl(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="ctl config with a [bus] section (over "
            "/etc/mirrorbus/ctl.toml and ~/.config/mirrorbus/ctl.toml).",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="State directory of an embedded instance [env: MIRRORBUS_STATE_DIR].",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="NATS URL(s), comma-separated [env: MIRRORBUS_URL].", show_default=False
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert", help="CA certificate [env: MIRRORBUS_CA_CERT].", show_default=False
        ),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert", help="Client certificate [env: MIRRORBUS_CERT].", show_default=False
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="Client key [env: MIRRORBUS_KEY].", show_default=False),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix", help="Subject prefix [env: MIRRORBUS_PREFIX].", show_default=False
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for a worker's answer.")
    ] = 15.0,
    ttl: Annotated[
        float,
        typer.Option(
            "--ttl",
            help="Seconds a command stays valid; a worker that gets it "
            "later answers 'expired' and does not act.",
        ),
    ] = 60.0,
    min_position: Annotated[
        int | None,
        typer.Option(
            "--min-position",
            envvar="MIRRORBUS_MIN_POSITION",
            help="Answers only from a manager replica whose view holds this event of the log "
            "[env: MIRRORBUS_MIN_POSITION]; 0 takes any.  Default: the event of your last "
            "command, so a query after it shows its effect on any replica.",
            show_default=False,
        ),
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(
            "--replica",
            help="Ask this manager replica (by name) only, instead of any that is alive.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Settings come from, later winning: /etc/mirrorbus/ctl.toml, ~/.config/mirrorbus/ctl.toml,
    -c FILE, environment variables, flags."""
    # The ctl's one-line errors say what went wrong; library chatter stays out of the way.
    logging.getLogger("mirrorbus").setLevel(logging.ERROR)
    logging.getLogger("mirrorbus.config").setLevel(logging.WARNING)  # a typo in ctl.toml
    ctx.obj = _Options(
        config=config,
        timeout=timeout,
        ttl=ttl,
        min_position=min_position,
        replica=replica,
        flags=BusFlags(
            state_dir=state_dir, url=url, ca_cert=ca_cert, cert=cert, key=key, prefix=prefix
        ),
    )


def _with_control(ctx: typer.Context, fn: Callable[[Control], Awaitable[T]]) -> T:
    opts: _Options = ctx.obj
    settings = ctl_settings(opts.config, flags=opts.flags)

    if opts.min_position is not None and opts.min_position < 0:
        raise ConfigError("must be 0 or more", key="--min-position")
    min_position = recall(settings) if opts.min_position is None else opts.min_position

    async def main() -> T:
        from mirrorbus.bus import connect
        from mirrorbus.control import Control

        bus = await connect(settings, reconnect=False)
        try:
            control = Control(bus, min_position=min_position, replica=opts.replica, positions=True)
            result = await fn(control)
            remember(settings, control.written)
            return result
        finally:
            await bus.close()

    return run_async(main)


# -- formatting ------------------------------------------------------------------------------


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds}s"
    elif seconds < 3600:
        text = f"{seconds // 60}m"
    elif seconds < 86400:
        text = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    else:
        text = f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    return f"in {text}" if future else f"{text} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def _job_rows(jobs: Sequence[JobState], offline: set[str] | None = None) -> list[list[str]]:
    """Table rows; a job of an ``offline`` worker keeps its last status, marked as such."""
    now = datetime.now(UTC)
    offline = offline or set()
    return [
        [
            j.worker,
            j.name,
            f"{j.status} (worker offline)" if j.worker in offline else j.status,
            _ago(j.last_update, now),
            _ago(j.last_ended, now),
            _ago(j.next_schedule, now) if j.next_schedule else "-",
            j.size or "unknown",
            j.error_msg[:60],
        ]
        for j in jobs
    ]


# -- verbs -----------------------------------------------------------------------------------


@app.command("list")
@one_line_errors("mirrorbus ctl list")
def list_jobs(
    ctx: typer.Context,
    workers: Annotated[
        list[str] | None, typer.Argument(help="Workers whose jobs to list.", show_default=False)
    ] = None,
    worker: Annotated[
        list[str] | None,
        typer.Option("--worker", "-w", help="A worker (repeatable).", show_default=False),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Jobs of every worker.")] = False,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", "-s", help="Only these statuses (comma-separated).", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="tunasync's JSON shapes.")] = False,
    template: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="Go template per job, e.g. '{{.Name}}\\t{{.Status}}'.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List jobs: of every worker (--all) or of the given workers.

    Example: mirrorbus ctl list --all --json
    """
    names = [*(workers or []), *(worker or [])]
    web = all_ or not names
    fmt = None if template is None else GoTemplate(template, WEB_FIELDS if web else MIRROR_FIELDS)
    wanted = None
    if status:
        wanted = {s.strip() for s in status.split(",") if s.strip()}
        bad = wanted - set(STATUSES)
        if bad:
            raise ConfigError(
                f"unknown status {', '.join(sorted(bad))} (one of {', '.join(STATUSES)})",
                key="--status",
            )

    offline: set[str] = set()

    async def fetch(control: Control) -> list[JobState]:
        if not (as_json or fmt is not None):  # people see which workers are gone
            offline.update(w.name for w in await control.workers() if not w.online)
        if all_ or not names:
            return await control.jobs()
        found: list[JobState] = []
        for name in names:
            found += await control.jobs(name)
        return found

    jobs = _with_control(ctx, fetch)
    if wanted is not None:
        jobs = [j for j in jobs if j.status in wanted]
    shape = web_mirror_status if web else mirror_status
    if fmt is not None:
        typer.echo("".join(fmt.render(shape(j)) + "\n" for j in jobs), nl=False)
        return
    if as_json:
        typer.echo(json.dumps([shape(j) for j in jobs], indent=2))
        return
    headers = ["WORKER", "JOB", "STATUS", "LAST SUCCESS", "LAST END", "NEXT", "SIZE", "ERROR"]
    typer.echo(table(headers, _job_rows(jobs, offline)))


@app.command("workers")
@one_line_errors("mirrorbus ctl workers")
def list_workers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List workers, online or not, with when they were last seen."""
    rows = _with_control(ctx, lambda c: c.workers())
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": w.name,
                        "online": w.online,
                        "token": "REDACTED",
                        "last_online": w.last_seen.isoformat() if w.last_seen else None,
                        "last_register": w.started_at.isoformat() if w.started_at else None,
                        "version": w.version,
                        "hostname": w.hostname,
                        "jobs": w.jobs,
                    }
                    for w in rows
                ],
                indent=2,
            )
        )
        return
    now = datetime.now(UTC)
    typer.echo(
        table(
            ["WORKER", "STATE", "LAST SEEN", "JOBS", "CONCURRENT", "HOST", "VERSION"],
            [
                [
                    w.name,
                    "online" if w.online else "offline",
                    _ago(w.last_seen, now),
                    str(w.jobs),
                    str(w.concurrent),
                    w.hostname,
                    w.version,
                ]
                for w in rows
            ],
        )
    )


def _command(
    ctx: typer.Context, verb: Verb, worker: str, job: str | None, force: bool = False
) -> None:
    opts: _Options = ctx.obj
    answer = _with_control(
        ctx, lambda c: c.command(verb, worker, job, force=force, timeout=opts.timeout, ttl=opts.ttl)
    )
    target = worker if job is None else f"{worker}/{job}"
    typer.echo(f"{verb} {target}: accepted: {answer.message}")


WorkerOpt = Annotated[
    str, typer.Option("--worker", "-w", help="The worker that runs the job.", show_default=False)
]
JobArg = Annotated[str, typer.Argument(help="The job (mirror) name.", show_default=False)]


@app.command()
@one_line_errors("mirrorbus ctl start")
def start(
    ctx: typer.Context,
    job: JobArg,
    worker: WorkerOpt,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Ignore the concurrency limit.")
    ] = False,
) -> None:
    """Start a job now (enables a paused or disabled job).

    Example: mirrorbus ctl start -w worker1 debian
    """
    _command(ctx, "start", worker, job, force)


@app.command()
@one_line_errors("mirrorbus ctl stop")
def stop(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Stop a job's running sync and pause it until start or restart."""
    _command(ctx, "stop", worker, job)


@app.command()
@one_line_errors("mirrorbus ctl disable")
def disable(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Disable a job (kills a running sync); it stays disabled across worker restarts."""
    _command(ctx, "disable", worker, job)


@app.command()
@one_line_errors("mirrorbus ctl restart")
def restart(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Kill a job's running sync (if any) and start it again."""
    _command(ctx, "restart", worker, job)


@app.command()
@one_line_errors("mirrorbus ctl ping")
def ping(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Ask the worker about a job; changes nothing (tunasync's ping unscheduled it)."""
    _command(ctx, "ping", worker, job)


@app.command()
@one_line_errors("mirrorbus ctl logs")
def logs(
    ctx: typer.Context,
    job: JobArg,
    worker: WorkerOpt,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing while the job runs (Ctrl-C to stop)."),
    ] = False,
    tail: Annotated[
        int, typer.Option("--tail", "-n", help="Bytes from the end to start with.")
    ] = 16384,
) -> None:
    """Print the latest log of a job, fetched from its worker over the bus.

    Example: mirrorbus ctl logs -w worker1 debian -f
    """

    async def show(control: Control) -> None:
        chunk = await control.log_chunk(worker, job, offset=-abs(tail))
        typer.echo(f"==> {worker}/{job}: {chunk.file} <==", err=True)
        typer.echo(chunk.data, nl=False)
        while follow:
            if chunk.data == "" and not chunk.running and chunk.latest == chunk.file:
                break  # the run is over and everything was printed
            if chunk.data == "":
                await anyio.sleep(1.0)
            if chunk.latest != chunk.file and chunk.offset >= chunk.size:
                chunk = await control.log_chunk(worker, job, offset=0, file=chunk.latest)
                typer.echo(f"\n==> {worker}/{job}: {chunk.file} <==", err=True)
            else:
                chunk = await control.log_chunk(worker, job, offset=chunk.offset, file=chunk.file)
            typer.echo(chunk.data, nl=False)

    with contextlib.suppress(KeyboardInterrupt):
        _with_control(ctx, show)


@app.command("set-size")
@one_line_errors("mirrorbus ctl set-size")
def set_size(
    ctx: typer.Context,
    job: JobArg,
    size: Annotated[str, typer.Argument(help="The size to show, e.g. 1.2T.", show_default=False)],
    worker: WorkerOpt,
) -> None:
    """Set the size shown for a job (e.g. from a cron job's du); the next sync's own size wins.

    Example: mirrorbus ctl set-size -w worker1 debian 1.2T
    """
    opts: _Options = ctx.obj
    answer = _with_control(
        ctx,
        lambda c: c.command("set-size", worker, job, size=size, timeout=opts.timeout, ttl=opts.ttl),
    )
    typer.echo(f"set-size {worker}/{job}: accepted: {answer.message}")


@app.command("rm-worker")
@one_line_errors("mirrorbus ctl rm-worker")
def rm_worker(ctx: typer.Context, worker: WorkerOpt) -> None:
    """Remove a worker's record from the status view (its jobs stay, as in tunasync).

    Example: mirrorbus ctl rm-worker -w old-worker
    """
    _with_control(ctx, lambda c: c.forget_worker(worker))
    typer.echo(f"Successfully removed the worker {worker}")


@app.command()
@one_line_errors("mirrorbus ctl flush")
def flush(ctx: typer.Context) -> None:
    """Remove every disabled job from the status view (tunasync's flush).

    Example: mirrorbus ctl disable -w worker1 old-mirror && mirrorbus ctl flush
    """
    _with_control(ctx, lambda c: c.flush_disabled())
    typer.echo("Successfully flushed disabled jobs")


@app.command()
@one_line_errors("mirrorbus ctl reload")
def reload(ctx: typer.Context, worker: WorkerOpt) -> None:
    """Make a worker re-read its config: jobs added, removed and changed (like SIGHUP).

    Example: mirrorbus ctl reload -w worker1
    """
    _command(ctx, "reload", worker, None)


@app.command()
@one_line_errors("mirrorbus ctl history")
def history(
    ctx: typer.Context,
    job: JobArg,
    worker: WorkerOpt,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Past runs of a job: start, end, result, size, error."""
    runs = _with_control(ctx, lambda c: c.history(worker, job, limit))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "run_id": r.run_id,
                        "started_at": r.started_at.isoformat(),
                        "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                        "result": r.result,
                        "attempts": r.attempts,
                        "size": r.size,
                        "error": r.error,
                        "exit_code": r.exit_code,
                        "reason": r.reason,
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return
    typer.echo(
        table(
            ["STARTED", "DURATION", "RESULT", "ATTEMPTS", "SIZE", "EXIT", "ERROR"],
            [
                [
                    f"{r.started_at.astimezone():%Y-%m-%d %H:%M:%S}",
                    f"{(r.ended_at - r.started_at).total_seconds():.1f}s" if r.ended_at else "-",
                    r.result,
                    str(r.attempts),
                    r.size or "-",
                    "-" if r.exit_code is None else str(r.exit_code),
                    r.error[:60],
                ]
                for r in runs
            ],
        )
    )


def human_bytes(count: float) -> str:
    """``855.0 KiB``: powers of 1024, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@app.command()
@one_line_errors("mirrorbus ctl status")
def status(ctx: typer.Context) -> None:
    """A summary: the manager that answered, workers, jobs by status, and what the log and
    the view store (the disk they need grows with every run: README, "Sizing")."""

    async def gather(
        c: Control,
    ) -> tuple[PingInfo, list[WorkerRow], list[JobState], dict[str, tuple[int, int]]]:
        return await c.ping(), await c.workers(), await c.jobs(), await c.bus.stream_usage()

    ping, workers, jobs, usage = _with_control(ctx, gather)
    now = datetime.now(UTC)
    view = "" if ping.view_bytes is None else f", view {human_bytes(ping.view_bytes)}"
    who = f"replica {ping.replica}" if ping.replica else "manager"
    lines = [["manager", f"{who} on {ping.host or '?'}, at event {ping.position}{view}"]]
    online = [w for w in workers if w.online]
    offline = ", ".join(
        f"{w.name} last seen {_ago(w.last_seen, now)}" for w in workers if not w.online
    )
    lines.append(
        [
            "workers",
            f"{len(online)} online, {len(workers) - len(online)} offline"
            + (f" ({offline})" if offline else ""),
        ]
    )
    counts = {s: sum(1 for j in jobs if j.status == s) for s in STATUSES}
    by_status = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(["jobs", f"{len(jobs)}" + (f": {by_status}" if by_status else "")])
    for name, (nbytes, messages) in sorted(usage.items()):
        each = f", {human_bytes(nbytes / messages)} each" if messages else ""
        lines.append(["stream", f"{name} {human_bytes(nbytes)} in {messages} messages{each}"])
    typer.echo("\n".join(f"{k:<8}  {v}" for k, v in lines))


from mirrorbus.cli import ctl_live as _ctl_live  # noqa: E402,F401  (registers watch, events)
