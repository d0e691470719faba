"""The three-node nats-server cluster of ``mirrorbus up --cluster``, on loopback.

A single mirror host gains nothing in capacity from three nodes; what it gains is the
behaviour of a real site's JetStream R3 log, locally: a node can die (or be upgraded) while
workers keep appending and the manager keeps projecting, and the streams keep every event.
It is also the way to try a cluster setup before running one across machines.

Layout, for the base port ``P`` (``--port``, default 14222)::

    node       client port   route port   server_name   directory
    1          P             P+3          mirrorbus-1   STATE/nats/node-1/ (nats.conf, jetstream/)
    2          P+1           P+4          mirrorbus-2   STATE/nats/node-2/
    3          P+2           P+5          mirrorbus-3   STATE/nats/node-3/

Every node has the same users and client TLS as the single server (see
:mod:`mirrorbus.host.natsconf`), and a ``cluster`` block whose routes use mutual TLS with
``route.crt`` (see :func:`mirrorbus.host.pki.ensure_route_cert`).  Why not the server certificate:
a node dials its peers as a TLS client, and ``server.crt`` is good for server authentication
only, which Go's TLS enforces.  Why ``verify_and_map`` with a single route user rather than
``verify``: any certificate of our CA would otherwise be accepted as a route, and a route is
not subject to the users' permissions.

Ports are fixed offsets rather than random ones so that they are predictable and survive a
restart; every one is checked to be free before a node starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mirrorbus.dirs import make_dirs
from mirrorbus.errors import ServerError
from mirrorbus.events.subjects import Subjects
from mirrorbus.host.instance import Instance, InstanceInfo
from mirrorbus.host.server import NatsServer, _check_port_free

__all__ = ["CLUSTER_NAME", "NODES", "Node", "cluster_ports", "nodes", "servers", "write_configs"]

NODES = 3
CLUSTER_NAME = "mirrorbus"


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the embedded cluster (``index`` counts from 1)."""

    index: int
    host: str
    port: int
    route_port: int

    @property
    def name(self) -> str:
        return f"{CLUSTER_NAME}-{self.index}"


def cluster_ports(base: int) -> tuple[int, ...]:
    """The client ports of the nodes for base port ``base``: ``base`` .. ``base + 2``."""
    if not 0 < base <= 65536 - 2 * NODES:
        raise ServerError(f"--port {base} leaves no room for {2 * NODES} consecutive ports")
    return tuple(base + i for i in range(NODES))


def nodes(info: InstanceInfo) -> list[Node]:
    """The nodes of a clustered instance; route ports follow the client ports."""
    ports = info.node_ports
    return [
        Node(index=i + 1, host=info.host, port=p, route_port=info.port + len(ports) + i)
        for i, p in enumerate(ports)
    ]


def _config_file(instance: Instance, node: Node) -> Path:
    return instance.node_dir(node.index) / "nats.conf"


def write_configs(instance: Instance, info: InstanceInfo, workers: Iterable[str]) -> None:
    """Issue the route certificate if needed and write every node's ``nats.conf``."""
    # Here, not at the top: `up`'s supervisor builds the nodes' servers without the
    # certificate machinery (cryptography), which only the preparation step needs.
    from mirrorbus.host import pki
    from mirrorbus.host.natsconf import ClusterBlock, render_server_config

    pki_dir = instance.pki_dir.resolve()
    pki.ensure_route_cert(pki_dir)
    all_nodes = nodes(info)
    names = list(workers)
    for node in all_nodes:
        directory = instance.node_dir(node.index)
        make_dirs(directory, 0o700)
        text = render_server_config(
            pki_dir=pki_dir,
            store_dir=(directory / "jetstream").resolve(),
            host=node.host,
            port=node.port,
            subjects=Subjects(info.prefix),
            workers=names,
            server_name=node.name,
            cluster=ClusterBlock(
                name=CLUSTER_NAME,
                host=node.host,
                port=node.route_port,
                routes=tuple((n.host, n.route_port) for n in all_nodes if n != node),
            ),
        )
        path = _config_file(instance, node)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def servers(instance: Instance, info: InstanceInfo, binary: Path) -> list[NatsServer]:
    """A :class:`NatsServer` per node (not started), after checking every route port is free.

    The client ports are checked by :meth:`NatsServer.start` itself; a route port in use
    raises :class:`~mirrorbus.errors.PortInUseError` here, before any node starts.
    """
    result = []
    for node in nodes(info):
        _check_port_free(node.host, node.route_port)
        result.append(
            NatsServer(
                binary,
                _config_file(instance, node),
                host=node.host,
                port=node.port,
                log_file=instance.logs_dir / f"nats-server-{node.index}.log",
            )
        )
    return result
