"""``mirrorbus ctl`` (also ``mirrorbusctl``): tunasynctl's verbs over the bus.

Human tables by default, ``--json`` for scripts (``list --all --json`` prints tunasync's
``GET /jobs`` items, ``list -w W --json`` its ``MirrorStatus`` items).  Exit status 0 on
success, 1 when a command is rejected, a target is unknown or nobody answers, 2 for a
configuration problem; errors are one line on stderr.

This module is the app: the global options and the list of commands, each written in
:mod:`.verbs` (tunasynctl's verbs, queries) or :mod:`.watch` (``watch``, ``events``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mirrorbus.cli.ctl import verbs, watch
from mirrorbus.cli.ctl.base import Options
from mirrorbus.config.ctl import BusFlags

app = typer.Typer(
    help="Control and inspect jobs (tunasynctl's verbs).\n\n"
    "Examples:\n\n"
    "  mirrorbus ctl --state-dir ./mirrorbus-state list --all\n\n"
    "  mirrorbus ctl start -w worker1 debian --force",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich costs an import on every --help
)


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
            help="Answers only from a manager replica whose view holds this event of the log; "
            "0 takes any.  Default: the event of your last "
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
    ctx.obj = Options(
        config=config,
        timeout=timeout,
        ttl=ttl,
        min_position=min_position,
        replica=replica,
        flags=BusFlags(
            state_dir=state_dir, url=url, ca_cert=ca_cert, cert=cert, key=key, prefix=prefix
        ),
    )


# The commands, in the order ``--help`` lists them.
app.command("list")(verbs.list_jobs)
app.command("workers")(verbs.list_workers)
app.command()(verbs.start)
app.command()(verbs.stop)
app.command()(verbs.disable)
app.command()(verbs.restart)
app.command()(verbs.ping)
app.command()(verbs.logs)
app.command("set-size")(verbs.set_size)
app.command("rm-worker")(verbs.rm_worker)
app.command()(verbs.flush)
app.command()(verbs.reload)
app.command()(verbs.history)
app.command()(verbs.status)
app.command("watch")(watch.watch)
app.command("events")(watch.events)
