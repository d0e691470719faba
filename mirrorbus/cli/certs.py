"""`mirrorbus certs`: make the CA and certificates, and print nats-server's users block.

This replaces the openssl steps of tunasync's documentation.  Mounted by the main CLI as
``app.add_typer(certs.app, name="certs")``; usable alone for tests.  Every error is one
line on stderr and a non-zero exit code (that of the :class:`MirrorbusError` subclass).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from mirrorbus import pki
from mirrorbus.errors import MirrorbusError
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects
from mirrorbus.natsconf import render_authorization

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Make the site's CA and the client certificates that are its users on the bus.\n\n"
        "Example:\n\n"
        "  mirrorbus certs init --dir /etc/mirrorbus/pki --host nats.example.org\n\n"
        "  mirrorbus certs issue worker mirror1 --dir /etc/mirrorbus/pki\n\n"
        "  mirrorbus certs authorization --dir /etc/mirrorbus/pki"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich costs an import on every --help
)

P = ParamSpec("P")
R = TypeVar("R")

DirOption = Annotated[
    Path,
    typer.Option("--dir", "-d", help="Directory of the CA and certificates.", show_default=False),
]


def _one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a MirrorbusError into one line on stderr and its exit code, not a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MirrorbusError as e:
            typer.echo(f"mirrorbus certs: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


@app.command()
@_one_line_errors
def init(
    directory: DirOption,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Name or address clients dial (repeatable). Default: localhost, 127.0.0.1, ::1.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing CA (invalidates every cert).")
    ] = False,
) -> None:
    """Create the CA and the server certificate.

    Example: mirrorbus certs init --dir /etc/mirrorbus/pki --host nats.example.org --host 10.0.0.5
    """
    hosts = tuple(host) if host else pki.DEFAULT_HOSTS
    pki.init_ca(directory, hosts, force=force)
    typer.echo(f"CA and server certificate for {', '.join(hosts)} written to {directory}")


@app.command()
@_one_line_errors
def issue(
    role: Annotated[str, typer.Argument(help="manager, worker, admin, reader or gateway.")],
    directory: DirOption,
    name: Annotated[
        str | None, typer.Argument(help="Worker name (only for role worker).", show_default=False)
    ] = None,
) -> None:
    """Issue (or re-issue) a client certificate from the CA in --dir.

    Example: mirrorbus certs issue worker mirror1 --dir /etc/mirrorbus/pki
    """
    cert = pki.issue(directory, role, name)
    typer.echo(f"{cert.cert} (key {cert.key}), nats user {cert.identity!r}")
    if role in ("worker", "gateway"):
        # A worker's certificate also takes its subjects away from the gateway: the users
        # block must be rendered again for either.
        typer.echo(
            "add it to the server's users: `mirrorbus certs authorization --dir "
            f"{directory}`, then reload nats-server (SIGHUP)",
            err=True,
        )


@app.command()
@_one_line_errors
def authorization(
    directory: DirOption,
    prefix: Annotated[str, typer.Option(help="Subject prefix of the site.")] = DEFAULT_PREFIX,
) -> None:
    """Print the nats.conf users block: manager, admin, reader, gateway, each worker cert in --dir.

    Example: mirrorbus certs authorization --dir /etc/mirrorbus/pki >> nats.conf
    """
    typer.echo(render_authorization(Subjects(prefix), pki.issued_workers(directory)), nl=False)
