"""tunasynctl's verbs and the ctl's queries: ``list``, ``workers``, ``start``, ``stop``,
``disable``, ``restart``, ``ping``, ``logs``, ``set-size``, ``rm-worker``, ``flush``,
``reload``, ``history``, ``status`` (registered in :mod:`.app`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from mirrorbus.cli.common import one_line_errors
from mirrorbus.cli.ctl.base import Options, ago, table, with_control
from mirrorbus.cli.gotemplate import MIRROR_FIELDS, WEB_FIELDS, GoTemplate
from mirrorbus.errors import ConfigError
from mirrorbus.events import STATUSES, JobState, Verb
from projections.tunasync import mirror_status, web_mirror_status

if TYPE_CHECKING:
    # Imported where a command connects, not by `mirrorbus ctl --help`.
    from mirrorbus.control import Control
    from mirrorbus.events.wire import PingInfo, WorkerRow


def _echo_json(value: object) -> None:
    """``--json`` output: indented, names as written (not as ``\\u`` escapes)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _job_rows(jobs: Sequence[JobState], offline: set[str] | None = None) -> list[list[str]]:
    """Table rows; a job of an ``offline`` worker keeps its last status, marked as such."""
    now = datetime.now(UTC)
    offline = offline or set()
    return [
        [
            j.worker,
            j.name,
            f"{j.status} (worker offline)" if j.worker in offline else j.status,
            ago(j.last_update, now),
            ago(j.last_ended, now),
            ago(j.next_schedule, now) if j.next_schedule else "-",
            j.size or "unknown",
            j.error_msg[:60],
        ]
        for j in jobs
    ]


# -- verbs -----------------------------------------------------------------------------------


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

    jobs = with_control(ctx, fetch)
    if wanted is not None:
        jobs = [j for j in jobs if j.status in wanted]
    shape = web_mirror_status if web else mirror_status
    if fmt is not None:
        typer.echo("".join(fmt.render(shape(j)) + "\n" for j in jobs), nl=False)
        return
    if as_json:
        _echo_json([shape(j) for j in jobs])
        return
    headers = ["WORKER", "JOB", "STATUS", "LAST SUCCESS", "LAST END", "NEXT", "SIZE", "ERROR"]
    typer.echo(table(headers, _job_rows(jobs, offline)))


@one_line_errors("mirrorbus ctl workers")
def list_workers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List workers, online or not, with when they were last seen."""
    rows = with_control(ctx, lambda c: c.workers())
    if as_json:
        _echo_json(
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
                    ago(w.last_seen, now),
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
    opts: Options = ctx.obj
    answer = with_control(
        ctx, lambda c: c.command(verb, worker, job, force=force, timeout=opts.timeout, ttl=opts.ttl)
    )
    target = worker if job is None else f"{worker}/{job}"
    typer.echo(f"{verb} {target}: accepted: {answer.message}")


WorkerOpt = Annotated[
    str, typer.Option("--worker", "-w", help="The worker that runs the job.", show_default=False)
]
JobArg = Annotated[str, typer.Argument(help="The job (mirror) name.", show_default=False)]


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


@one_line_errors("mirrorbus ctl stop")
def stop(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Stop a job's running sync and pause it until start or restart."""
    _command(ctx, "stop", worker, job)


@one_line_errors("mirrorbus ctl disable")
def disable(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Disable a job (kills a running sync); it stays disabled across worker restarts."""
    _command(ctx, "disable", worker, job)


@one_line_errors("mirrorbus ctl restart")
def restart(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Kill a job's running sync (if any) and start it again."""
    _command(ctx, "restart", worker, job)


@one_line_errors("mirrorbus ctl ping")
def ping(ctx: typer.Context, job: JobArg, worker: WorkerOpt) -> None:
    """Ask the worker about a job; changes nothing (tunasync's ping unscheduled it)."""
    _command(ctx, "ping", worker, job)


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
        with_control(ctx, show)


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
    opts: Options = ctx.obj
    answer = with_control(
        ctx,
        lambda c: c.command("set-size", worker, job, size=size, timeout=opts.timeout, ttl=opts.ttl),
    )
    typer.echo(f"set-size {worker}/{job}: accepted: {answer.message}")


@one_line_errors("mirrorbus ctl rm-worker")
def rm_worker(ctx: typer.Context, worker: WorkerOpt) -> None:
    """Remove a worker's record from the status view (its jobs stay, as in tunasync).

    Example: mirrorbus ctl rm-worker -w old-worker
    """
    with_control(ctx, lambda c: c.forget_worker(worker))
    typer.echo(f"Successfully removed the worker {worker}")


@one_line_errors("mirrorbus ctl flush")
def flush(ctx: typer.Context) -> None:
    """Remove every disabled job from the status view (tunasync's flush).

    Example: mirrorbus ctl disable -w worker1 old-mirror && mirrorbus ctl flush
    """
    with_control(ctx, lambda c: c.flush_disabled())
    typer.echo("Successfully flushed disabled jobs")


@one_line_errors("mirrorbus ctl reload")
def reload(ctx: typer.Context, worker: WorkerOpt) -> None:
    """Make a worker re-read its config: jobs added, removed and changed (like SIGHUP).

    Example: mirrorbus ctl reload -w worker1
    """
    _command(ctx, "reload", worker, None)


@one_line_errors("mirrorbus ctl history")
def history(
    ctx: typer.Context,
    job: JobArg,
    worker: WorkerOpt,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Past runs of a job: start, end, result, size, error."""
    runs = with_control(ctx, lambda c: c.history(worker, job, limit))
    if as_json:
        _echo_json(
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


@one_line_errors("mirrorbus ctl status")
def status(ctx: typer.Context) -> None:
    """A summary: the manager that answered, workers, jobs by status, and what the log and
    the view store (the disk they need grows with every run: README, "Sizing")."""

    async def gather(
        c: Control,
    ) -> tuple[PingInfo, list[WorkerRow], list[JobState], dict[str, tuple[int, int]]]:
        return await c.ping(), await c.workers(), await c.jobs(), await c.bus.stream_usage()

    ping, workers, jobs, usage = with_control(ctx, gather)
    now = datetime.now(UTC)
    view = "" if ping.view_bytes is None else f", view {human_bytes(ping.view_bytes)}"
    who = f"replica {ping.replica}" if ping.replica else "manager"
    lines = [["manager", f"{who} on {ping.host or '?'}, at event {ping.position}{view}"]]
    online = [w for w in workers if w.online]
    offline = ", ".join(
        f"{w.name} last seen {ago(w.last_seen, now)}" for w in workers if not w.online
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
