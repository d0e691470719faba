"""``mirrorbus worker`` and ``mirrorbus manager``: the two long-running services.

Both stop cleanly on SIGTERM or SIGINT: the worker ends every job's process group, records
the runs as killed, flushes its events and writes a snapshot; the manager finishes the batch
it is applying (the transaction either commits or not) and closes.

Under systemd (``Type=notify``, see ``examples/systemd/``) both say ``READY=1`` once they
serve on the bus and ping the watchdog while their connection lives (:mod:`mirrorbus.sdnotify`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import anyio
import typer
from anyio.abc import TaskStatus

from mirrorbus.bus import Bus, allow_aiohttp, connect
from mirrorbus.cli.common import (
    LogFormat,
    one_line_errors,
    run_async,
    setup_logging,
)
from mirrorbus.config.bus import BusSettings
from mirrorbus.config.outputs import with_http
from mirrorbus.config.site import manager_config, outbox_path, worker_settings
from mirrorbus.errors import BusError
from mirrorbus.sdnotify import Notifier

# Each service imports its own parts in its command (below), so that `mirrorbus worker`
# never imports the manager's view (SQLAlchemy) or HTTP server, and the manager no worker.

log = logging.getLogger("mirrorbus")

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory of an embedded `mirrorbus up` instance.",
        show_default=False,
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")]
Debug = Annotated[bool, typer.Option("--debug", help="Log everything, NATS included.")]
WithSystemd = Annotated[bool, typer.Option("--with-systemd", help="No timestamps in log lines.")]
LogFormatOpt = Annotated[
    LogFormat,
    typer.Option("--log-format", help="text (tunasync's lines) or json (one object a line)."),
]


async def _until_signal(
    on_stop: Callable[[str], object],
    on_hup: Callable[[], object] | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Return after SIGTERM or SIGINT, having told ``on_stop`` its name; SIGHUP calls
    ``on_hup`` (config reload) when given."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()  # from here on a signal is ours, not the default's
        async for sig in signals:
            if sig == signal.SIGHUP:
                if on_hup is None:
                    log.warning("SIGHUP ignored: nothing to reload")
                else:
                    log.info("SIGHUP: reloading the config")
                    on_hup()
                continue
            log.info("%s: stopping", sig.name)
            on_stop(sig.name)
            return


async def _connect_patiently(settings: BusSettings) -> Bus:
    """Connect, waiting (with back-off) while NATS is unreachable: a worker started during an
    outage waits for the bus instead of exiting.  A refused certificate still fails at once."""
    delay = 1.0
    while True:
        try:
            return await connect(settings)
        except BusError as exc:
            if "certificate" in str(exc).lower() or "authoriz" in str(exc).lower():
                raise
            log.warning("%s; retrying in %.0fs", exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)


@one_line_errors("mirrorbus worker")
def worker(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="tunasync worker config (TOML).", show_default=False),
    ],
    state_dir: StateDir = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config, print the jobs, connect nowhere.")
    ] = False,
    verbose: Verbose = False,
    debug: Debug = False,
    with_systemd: WithSystemd = False,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Run the jobs of a worker config and obey commands from the bus.

    Example: mirrorbus worker -c /etc/mirrorbus/worker.toml
    """
    setup_logging(verbose, debug, with_systemd, log_format)
    from mirrorbus.config.worker import check_report, load_worker_config
    from mirrorbus.worker.hooks.cgroup import worker_cgroups
    from mirrorbus.worker.outbox.journal import Journal
    from mirrorbus.worker.service import Worker

    cfg = load_worker_config(config)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if check:
        typer.echo(check_report(cfg))
        return
    if cfg.cgroup.enable:
        worker_cgroups(cfg)  # unusable cgroups: a clear error now, before connecting anywhere
    settings = worker_settings(cfg.bus, config, cfg.name, state_dir)

    journal = Journal(outbox_path(cfg.bus, cfg.name, state_dir))
    notifier = Notifier.from_environment()  # before any job inherits the environment

    async def main() -> None:
        # Signals are handled from the start: a stop while connecting or restoring (no job
        # runs yet) ends the worker cleanly instead of killing it.
        service: Worker | None = None
        serving = False
        bus = None

        def stop(name: str) -> None:
            notifier.stopping(f"stopping on {name}")
            if serving and service is not None:
                service.stop(f"signal {name}")
            else:
                tg.cancel_scope.cancel()

        def hup() -> None:
            if serving:
                tg.start_soon(reload)
            else:
                log.warning("SIGHUP ignored: not serving yet")

        async def reload() -> None:
            assert service is not None
            notifier.reloading()
            _, message = await service.reload()
            notifier.ready(message)

        async def serve(*, task_status: TaskStatus[None]) -> None:
            assert service is not None
            await service.run(task_status=task_status)
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(_until_signal, stop, hup)
                notifier.status(f"connecting to {', '.join(settings.servers)}")
                bus = await _connect_patiently(settings)
                service = Worker(cfg, bus, journal=journal, freeze_gc=True)
                await tg.start(serve)
                serving = True
                notifier.ready(f"worker {cfg.name}: {len(cfg.mirrors)} jobs, bus connected")
                tg.start_soon(notifier.watchdog, lambda: not bus.is_closed)
        finally:
            if bus is not None:
                with anyio.CancelScope(shield=True):
                    await bus.close()

    run_async(main)


manager_app = typer.Typer(
    help="The manager: projects the event log into the SQL status view and answers queries.\n\n"
    "Example: mirrorbus manager --state-dir ./mirrorbus-state",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich costs an import on every --help
)

ManagerConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Manager config: [bus], [database] url, [streams], [http], [files], "
        "[mirrorz], [tunasync_api].",
        show_default=False,
    ),
]
DbOpt = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL of the status view.", show_default=False)
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="This manager replica's name: its own consumer on the event log and, under "
        "--state-dir, its own view (manager-NAME.db); the same as [manager] name "
        "(default: the host name).",
        show_default=False,
    ),
]


@manager_app.callback(invoke_without_command=True)
@one_line_errors("mirrorbus manager")
def manager(
    ctx: typer.Context,
    config: ManagerConfigOpt = None,
    state_dir: StateDir = None,
    db: DbOpt = None,
    name: NameOpt = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="Serve tunasync's read API, /metrics and the status page on HOST:PORT "
            "(e.g. 127.0.0.1:14280); the same as [http] enable = true.",
            show_default=False,
        ),
    ] = None,
    tunasync_api: Annotated[
        str | None,
        typer.Option(
            "--tunasync-api",
            help="Serve tunasync's manager API (old workers, tunasynctl) on HOST:PORT "
            "(e.g. 127.0.0.1:14242), with the gateway certificate; the same as "
            "[tunasync_api] listen.",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
    debug: Debug = False,
    with_systemd: WithSystemd = False,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Run the manager (unless a subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose, debug, with_systemd, log_format)
    mc = manager_config(config, state_dir, db, name)
    outputs = with_http(mc.outputs, http)
    from mirrorbus.config.gateway import with_listen
    from mirrorbus.manager.service import Manager
    from projections.status_view import StatusView

    gateway = with_listen(mc.gateway, tunasync_api)
    gateway_bus = mc.gateway_bus() if gateway.enable else None
    if gateway.enable:
        allow_aiohttp()  # the gateway serves tunasync's API and calls old workers' URLs

    view = StatusView(mc.database_url)
    notifier = Notifier.from_environment()

    async def main() -> None:
        # Signals are handled from the start: a stop while connecting or catching up ends
        # the manager cleanly (the batch being applied commits or not) instead of killing it.
        bus = gw_bus = None

        def stop(name: str) -> None:
            notifier.stopping(f"stopping on {name}")
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(_until_signal, stop)
                notifier.status(f"connecting to {', '.join(mc.bus.servers)}")
                bus = await connect(mc.bus)
                service = Manager(bus, view, name=mc.name, streams=mc.streams, outputs=outputs)
                await tg.start(service.run)
                if gateway_bus is not None:
                    from mirrorbus.gateway import Gateway

                    gw_bus = await connect(gateway_bus)
                    gw = Gateway(gw_bus, view, service.changes, gateway, maker=bus)
                    await tg.start(gw.run)
                notifier.ready("manager: bus connected, view projected, queries answered")
                tg.start_soon(notifier.watchdog, lambda: not bus.is_closed)
        finally:
            with anyio.CancelScope(shield=True):
                if gw_bus is not None:
                    await gw_bus.close()
                if bus is not None:
                    await bus.close()
            view.close()

    run_async(main)


@manager_app.command()
@one_line_errors("mirrorbus manager rebuild")
def rebuild(
    config: ManagerConfigOpt = None,
    state_dir: StateDir = None,
    db: DbOpt = None,
    name: NameOpt = None,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            help="Build into this database instead (compare it with the live view).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Replay the whole event log into fresh tables.

    Example: mirrorbus manager rebuild --state-dir ./mirrorbus-state
    """
    setup_logging()
    mc = manager_config(config, state_dir, db, name)
    from mirrorbus.manager.projector import catch_up
    from projections.status_view import StatusView

    view = StatusView(into or mc.database_url)

    async def main() -> int:
        bus = await connect(mc.bus)
        try:
            view.reset()
            return await catch_up(bus, view)
        finally:
            await bus.close()
            view.close()

    position = run_async(main)
    typer.echo(f"rebuilt {into or mc.database_url} up to event {position}")


@manager_app.command("dead-letters")
@one_line_errors("mirrorbus manager dead-letters")
def dead_letters(
    config: ManagerConfigOpt = None,
    state_dir: StateDir = None,
    db: DbOpt = None,
    name: NameOpt = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 100,
) -> None:
    """List the events set aside as undecodable, with their sequence and reason."""
    mc = manager_config(config, state_dir, db, name)
    from projections.status_view import StatusView

    view = StatusView(mc.database_url)
    try:
        rows = view.dead_letters(limit)
    finally:
        view.close()
    if not rows:
        typer.echo("no dead letters")
    for seq, subject, reason in rows:
        typer.echo(f"{seq}\t{subject}\t{reason}")
