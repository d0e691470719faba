"""``mirrorbus import tunasync URL|FILE``: a tunasync manager's statuses into the log.

Mounted by the main CLI as ``app.add_typer(importer.app, name="import")``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from mirrorbus.bus import connect
from mirrorbus.cli.common import one_line_errors, run_async
from mirrorbus.config.ctl import ctl_settings
from mirrorbus.errors import SourceError
from mirrorbus.gateway.importer import check_source, parse_job, read_items, record
from mirrorbus.host.instance import Instance

__all__ = ["app"]

app = typer.Typer(
    help="Bring a status history from elsewhere into the event log.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, as every other command's: "[bus]" is shown as written
)


@app.command("tunasync")
@one_line_errors("mirrorbus import tunasync")
def tunasync(
    source: Annotated[
        str,
        typer.Argument(
            help="A tunasync manager (http://host:14242: every worker's jobs), one of its "
            "GET /jobs or /workers/ID/jobs URLs, or a saved copy of either.",
            show_default=False,
        ),
    ],
    worker: Annotated[
        str | None,
        typer.Option(
            "--worker",
            "-w",
            help="The worker of jobs that name none (GET /jobs items do not).",
            show_default=False,
        ),
    ] = None,
    as_worker: Annotated[
        bool,
        typer.Option(
            "--as-worker",
            help="Append with the --worker's own certificate (from --state-dir) instead of "
            "the gateway's: for a worker whose certificate is issued already.",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="State directory of `mirrorbus up`.", show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="A ctl config whose [bus] holds the gateway's (or the worker's) certificate.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Record each job's status, times and size as tunasync showed them, so that the first
    /jobs after the switch shows the same.

    Example: mirrorbus import tunasync http://old-manager:14242 --state-dir ./mirrorbus-state
    """
    check_source(source)
    jobs = [parse_job(item, where, worker) for where, item in read_items(source)]
    if as_worker:
        if worker is None:
            raise SourceError("--as-worker needs --worker NAME (whose certificate to use)")
        others = sorted({j.worker for j in jobs if j.worker != worker})
        if others:
            raise SourceError(
                f"{source}: --as-worker {worker} cannot import jobs of {', '.join(others)}"
            )
    if as_worker and state_dir is not None and worker is not None:
        settings = Instance(state_dir).bus_settings("worker", worker)
    else:
        settings = ctl_settings(config, state_dir, role="gateway")

    async def main() -> int:
        bus = await connect(settings, reconnect=False)
        try:
            return await record(bus, jobs)
        finally:
            await bus.close()

    events = run_async(main)
    per_worker = Counter(j.worker for j in jobs)
    for name, count in sorted(per_worker.items()):
        statuses = Counter(j.status for j in jobs if j.worker == name)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        typer.echo(f"{name}: {count} job(s) imported ({detail})")
    typer.echo(f"{len(jobs)} job(s), {events} event(s) recorded from {source}")
