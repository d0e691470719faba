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

from mirrorbus.errors import ConfigError, MirrorbusError, PkiError
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects
from mirrorbus.host import pki
from mirrorbus.host.natsconf import ClusterBlock, render_authorization, render_server_config

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Make the site's CA and the client certificates that are its users on the bus.\n\n"
        "Example:\n\n"
        "  mirrorbus certs init --dir /etc/mirrorbus/pki --host nats.example.org\n\n"
        "  mirrorbus certs issue worker mirror1 --dir /etc/mirrorbus/pki\n\n"
        "  mirrorbus certs authorization --dir /etc/mirrorbus/pki\n\n"
        "  mirrorbus certs server-config --dir /etc/mirrorbus/pki > /etc/mirrorbus/nats.conf"
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
    role: Annotated[str, typer.Argument(help="manager, worker, admin, reader, gateway or route.")],
    directory: DirOption,
    name: Annotated[
        str | None,
        typer.Argument(
            help="Worker name (role worker), the operator's own name (admin, reader: one "
            "certificate per person) or cluster node (role route).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="route only: another name or address the peers dial this node at "
            "(repeatable; the node name is always one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Issue (or re-issue) a client certificate, or a cluster node's route certificate, from
    the CA in --dir.

    Example: mirrorbus certs issue worker mirror1 --dir /etc/mirrorbus/pki

    Example: mirrorbus certs issue admin alice --dir /etc/mirrorbus/pki

    Example: mirrorbus certs issue route nats2.example.org --dir /etc/mirrorbus/pki
    """
    if role == "route":
        if name is None:
            raise PkiError(
                "role 'route' needs the node's name, e.g. "
                "`mirrorbus certs issue route nats2.example.org`"
            )
        route = pki.issue_route(directory, name, tuple(host or ()))
        typer.echo(f"{route.cert} (key {route.key}), route user {route.identity!r}")
        typer.echo(
            "copy it with ca.crt to the node; its cluster block: `mirrorbus certs "
            f"server-config --dir {directory} --name {name} --cluster NAME --route ...`",
            err=True,
        )
        return
    if host:
        raise PkiError("--host is for role 'route' only (client certificates name no host)")
    cert = pki.issue(directory, role, name)
    typer.echo(f"{cert.cert} (key {cert.key}), nats user {cert.identity!r}")
    if role in ("worker", "gateway") or name is not None:
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
    typer.echo(
        render_authorization(
            Subjects(prefix), pki.issued_workers(directory), pki.issued_operators(directory)
        ),
        nl=False,
    )


@app.command()
@_one_line_errors
def revoke(
    role: Annotated[str, typer.Argument(help="admin, reader or worker.")],
    name: Annotated[str, typer.Argument(help="The operator's or the worker's name.")],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", "-d", help="Directory of the CA and certificates.", show_default=False
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="A `mirrorbus up` state directory: its nats.conf is written again without "
            "the user and its nats-server reloaded.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Revoke a certificate: moved to revoked/ in the PKI directory, so that the users block
    no longer lists it; the server refuses it once it reloads its config (done here with
    --state-dir; else write the users block again and SIGHUP nats-server).

    Example: mirrorbus certs revoke admin alice --state-dir /var/lib/mirrorbus
    """
    from mirrorbus.host.instance import Instance
    from mirrorbus.host.server import reload_running

    instance = Instance(state_dir) if state_dir is not None else None
    pki_dir = instance.pki_dir if instance is not None else directory
    if pki_dir is None:
        raise PkiError("give --dir (the PKI directory) or --state-dir (a `mirrorbus up` one)")
    moved = pki.revoke(pki_dir, role, name)
    typer.echo(f"{role} {name}: certificate moved to {moved[0].parent}")
    if instance is None:
        typer.echo(
            "write the users block again (`mirrorbus certs authorization --dir "
            f"{pki_dir}`) and reload nats-server (SIGHUP): until then it is still accepted",
            err=True,
        )
        return
    from mirrorbus.host.supervisor import write_server_config

    write_server_config(instance)
    reloaded = reload_running(instance.nats_conf)
    if reloaded:
        typer.echo(f"nats-server reloaded ({instance.nats_conf}): the certificate is refused")
    else:
        typer.echo(
            f"{instance.nats_conf} written again; no running nats-server uses it "
            "(it takes effect at the next start)",
            err=True,
        )


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{text!r} is not HOST:PORT", file="mirrorbus certs", key=option)
    return host.strip("[]") or "0.0.0.0", int(port)


@app.command("server-config")
@_one_line_errors
def server_config(
    directory: DirOption,
    store_dir: Annotated[
        Path, typer.Option("--store-dir", help="JetStream's store directory.")
    ] = Path("/var/lib/mirrorbus/jetstream"),
    listen: Annotated[
        str, typer.Option(help="Where clients connect (HOST:PORT).")
    ] = "0.0.0.0:14222",
    name: Annotated[
        str, typer.Option("--name", help="server_name, unique per node of a cluster.")
    ] = "mirrorbus",
    prefix: Annotated[str, typer.Option(help="Subject prefix of the site.")] = DEFAULT_PREFIX,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Cluster name: add a cluster {} block (routes with route-NAME.crt).",
            show_default=False,
        ),
    ] = None,
    cluster_listen: Annotated[
        str, typer.Option("--cluster-listen", help="Where the peers' routes connect.")
    ] = "0.0.0.0:14248",
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route", help="A peer's route address HOST:PORT (repeatable).", show_default=False
        ),
    ] = None,
    pki_path: Annotated[
        Path | None,
        typer.Option(
            "--pki-path",
            help="Where the node finds the certificate files, if not at --dir (a config made "
            "on the CA's host for another node).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a complete nats.conf: client listener, JetStream, mutual TLS, the users of the
    certificates in --dir and, with --cluster, this node's routes to its peers.

    Example: mirrorbus certs server-config --dir /etc/mirrorbus/pki > /etc/mirrorbus/nats.conf

    Example (node nats1 of three): mirrorbus certs server-config --dir /etc/mirrorbus/pki
    --name nats1.example.org --cluster mirrorbus --route nats2.example.org:14248
    --route nats3.example.org:14248
    """
    host, port = _host_port(listen, "--listen")
    block: ClusterBlock | None = None
    if cluster is not None:
        pki.check_node(name)
        stem = f"route-{name}"
        for suffix in (".crt", ".key"):
            if not (directory / f"{stem}{suffix}").is_file():
                raise PkiError(
                    f"no route certificate for node {name!r} in {directory} ({stem}{suffix} "
                    f"is missing): run `mirrorbus certs issue route {name} --dir {directory}`"
                )
        if not route:
            raise ConfigError(
                "a cluster needs its peers: --route HOST:PORT for each other node",
                file="mirrorbus certs",
                key="--route",
            )
        route_host, route_port = _host_port(cluster_listen, "--cluster-listen")
        block = ClusterBlock(
            name=cluster,
            host=route_host,
            port=route_port,
            routes=tuple(_host_port(r, "--route") for r in route),
            cert=stem,
        )
    elif route:
        raise ConfigError("--route needs --cluster NAME", file="mirrorbus certs", key="--route")
    text = render_server_config(
        pki_dir=pki_path or directory.resolve(),
        store_dir=store_dir,
        host=host,
        port=port,
        subjects=Subjects(prefix),
        workers=pki.issued_workers(directory),
        server_name=name,
        cluster=block,
    )
    typer.echo(text, nl=False)
