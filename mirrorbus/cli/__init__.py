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

from pathlib import Path
from typing import Annotated

import typer

from mirrorbus import __version__
from mirrorbus.cli import certs, ctl, importer, project, services
from mirrorbus.cli.common import one_line_errors, setup_logging
from mirrorbus.instance import default_state_dir
from mirrorbus.manager.http import parse_listen
from mirrorbus.worker.config import load_worker_config

app = typer.Typer(
    help="mirrorbus: mirror-sync jobs on NATS JetStream with mutual TLS (a tunasync "
    "replacement).\n\nStart here: mirrorbus up -c examples/worker.toml",
    no_args_is_help=True,
    add_completion=True,
)
app.add_typer(certs.app, name="certs")
app.add_typer(ctl.app, name="ctl")
app.add_typer(services.manager_app, name="manager")
app.add_typer(importer.app, name="import")
app.command("worker")(services.worker)
app.command("project")(project.project)


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run NATS, the manager and a worker on this machine, TLS on, SQLite view.

    Example: mirrorbus up -c examples/worker.toml   (or: ... --cluster)
    """
    from mirrorbus.supervisor import up as run_up

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
    )


def main() -> None:
    app()


def ctl_main() -> None:
    """``mirrorbusctl``: the same as ``mirrorbus ctl``."""
    typer.main.get_command(ctl.app)()
