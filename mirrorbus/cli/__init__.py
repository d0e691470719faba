"""The ``mirrorbus`` command line: one typer app with a sub-app per area.

mirrorbus up -c worker.toml        the embedded default (nats-server + manager + worker)
mirrorbus worker -c worker.toml    a worker
mirrorbus manager                  the manager (``rebuild``, ``dead-letters``)
mirrorbus ctl ...                  tunasynctl's verbs (also ``mirrorbusctl``)
mirrorbus certs ...                CA and certificates
mirrorbus project NAME...          status outputs on their own (reader certificate)
mirrorbus import tunasync URL      a tunasync manager's job statuses into the log
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from mirrorbus import __version__
from mirrorbus.bus.transport import without_websocket_transport
from mirrorbus.cli.common import one_line_errors, setup_logging
from mirrorbus.config.listen import parse_listen

# Sub-commands are imported when they run (or when completion or their own --help asks),
# not before: `mirrorbus ctl list` must not pay for the manager's SQL and HTTP stacks or the
# worker, and `mirrorbus --help` for none of them.  name -> (module, attribute, short help);
# the short help is written here so that the top-level --help imports nothing.
_LAZY: dict[str, tuple[str, str, str]] = {
    "certs": ("mirrorbus.cli.certs", "app", "Make the CA and the certificates of each role."),
    "ctl": ("mirrorbus.cli.ctl.app", "app", "Control and inspect jobs (tunasynctl's verbs)."),
    "import": (
        "mirrorbus.cli.importer",
        "app",
        "Record a tunasync manager's job statuses in the log (switching all at once).",
    ),
    "manager": (
        "mirrorbus.cli.services",
        "manager_app",
        "The manager: projects the event log into the status view, answers queries.",
    ),
    "project": (
        "mirrorbus.cli.project",
        "project",
        "Keep status outputs current on another host (reader certificate).",
    ),
    "worker": ("mirrorbus.cli.services", "worker", "Run the jobs of a tunasync worker config."),
}


class _LazyGroup(typer.core.TyperGroup):
    """The top-level group: its own commands (``up``) plus the lazily imported ones."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _LAZY:
            return super().get_command(ctx, cmd_name)
        module, attr, _ = _LAZY[cmd_name]
        # nats-py is kept from importing aiohttp (see without_websocket_transport); a
        # manager or project that serves HTTP lifts that for itself (allow_aiohttp).
        without_websocket_transport()
        target = getattr(import_module(module), attr)
        command: Any
        if isinstance(target, typer.Typer):
            command = typer.main.get_group(target)
        else:
            single = typer.Typer(add_completion=False, rich_markup_mode=None)
            single.command(cmd_name)(target)
            command = typer.main.get_command(single)
        command.name = cmd_name
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, help_) for name, (_, _, help_) in _LAZY.items()]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


app = typer.Typer(
    cls=_LazyGroup,
    help="mirrorbus: mirror-sync jobs on NATS JetStream with mutual TLS (a tunasync "
    "replacement).\n\nStart here: mirrorbus up -c examples/worker.toml",
    no_args_is_help=True,
    add_completion=True,
    # Plain click help: typer's rich help would import rich for every --help.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mirrorbus {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


@app.command()
@one_line_errors("mirrorbus up")
def up(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="tunasync worker config.", show_default=False)
    ],
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where certificates, "
            "the event log and the view live "
            "[default: $MIRRORBUS_STATE_DIR or "
            "./mirrorbus-state].",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="Port of the embedded nats-server [default: 14222, or the one used before]; "
            "with --cluster the first of six (clients PORT..PORT+2, routes PORT+3..PORT+5).",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run a three-node nats-server cluster on loopback, streams with three "
            "replicas (kept on later starts of this state directory).",
        ),
    ] = False,
    nats_server: Annotated[
        str | None,
        typer.Option(
            "--nats-server",
            envvar="MIRRORBUS_NATS_SERVER",
            help="nats-server binary to use.",
            show_default=False,
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help="Serve the status page, tunasync's /jobs and /metrics on "
            "this address (e.g. 127.0.0.1:14280).",
            show_default=False,
        ),
    ] = None,
    tunasync_api: Annotated[
        str | None,
        typer.Option(
            "--tunasync-api",
            help="Serve tunasync's manager API on this address (e.g. 127.0.0.1:14242) for "
            "tunasync workers and tunasynctl that are not switched yet.",
            show_default=False,
        ),
    ] = None,
    managers: Annotated[
        int,
        typer.Option(
            "--managers",
            min=1,
            max=16,
            help="Run this many manager replicas (each its own consumer and SQLite view; "
            "queries go to any that is alive); with --http, replica i serves on PORT+i-1.",
        ),
    ] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run NATS, the manager and a worker on this machine, TLS on, SQLite view.

    Example: mirrorbus up -c examples/worker.toml   (or: ... --cluster)
    """
    without_websocket_transport()  # the supervisor only starts and watches processes
    from mirrorbus.config.worker import load_worker_config
    from mirrorbus.host.instance import default_state_dir
    from mirrorbus.host.supervisor import up as run_up

    setup_logging(verbose=verbose)
    cfg = load_worker_config(config)
    for warning in cfg.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if http is not None:
        parse_listen(http, "--http")  # a bad address fails here, not in the manager
    if tunasync_api is not None:
        parse_listen(tunasync_api, "--tunasync-api")
    run_up(
        config,
        cfg,
        state_dir or default_state_dir(),
        port,
        nats_server,
        http,
        clustered=cluster,
        tunasync_api=tunasync_api,
        managers=managers,
    )


def main() -> None:
    app()


def ctl_main() -> None:
    """``mirrorbusctl``: the same as ``mirrorbus ctl``."""
    without_websocket_transport()
    from mirrorbus.cli.ctl.app import app as ctl_app

    typer.main.get_command(ctl_app)()
